"""`frugate sim-worker`: the vLLM simulator.

Register with `app.command("sim-worker")(sim.sim_worker)`.
"""

from __future__ import annotations

from workers.sim.cli import sim_worker

__all__ = ["sim_worker"]
