"""`python -m workers.sim ...` runs the same command as `frugate sim-worker`."""

from __future__ import annotations

from workers.sim.cli import main

if __name__ == "__main__":
    main()
