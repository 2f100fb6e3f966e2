"""Start simulators as subprocesses on free ports, for tests, demos and load benchmarks.

    with SimServer(model="small", profile="realistic-small") as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="x")
        ...
        sim.kill()        # SIGKILL, to test failover
        sim.start()       # the same port again

The parent binds the listening socket and hands it to the child, so the port is known before
the child starts and no other process can take it in between.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from workers.sim.config import SimConfig

START_TIMEOUT_S: Final = 30.0
REPO_ROOT: Final = Path(__file__).resolve().parents[2]


class SimServer:
    """A `frugate sim-worker` child process listening on 127.0.0.1:<port>."""

    def __init__(self, config: SimConfig | None = None, *, port: int = 0, **overrides: Any) -> None:
        """`port=0` (the default) picks a free port; other keywords are SimConfig fields."""
        if config is None:
            config = SimConfig.from_profile(overrides.pop("profile", "fast"), **overrides)
        elif overrides:
            config = SimConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="frugate-sim-", suffix=".log", delete=False
        )

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to give the openai SDK as base_url."""
        return self.url + "/v1"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT_S) -> SimServer:
        if self.alive:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.config.host, self.port))
        listener.listen(4096)
        self.port = listener.getsockname()[1]
        fd = listener.fileno()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "workers.sim",
            "--config-json",
            json.dumps(self.config.to_dict()),
            "--fd",
            str(fd),
        ]
        try:
            self.process = subprocess.Popen(
                command,
                pass_fds=[fd],
                stdout=self._log,
                stderr=self._log,
                env=env,
                cwd=str(REPO_ROOT),
            )
        finally:
            listener.close()
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"simulator exited during start-up:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"simulator not healthy after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the replica disappears mid-request, like a crashed vLLM."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.stop()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    # -- control API -----------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10.0) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def faults(self, **changes: Any) -> dict[str, Any]:
        """POST /sim/faults, e.g. faults(error_rate=0.5) or faults(freeze_ms=2000)."""
        result: dict[str, Any] = self._call("POST", "/sim/faults", changes)
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/sim/stats")
        return result

    def usage(self, limit: int = 100, request_id: str | None = None) -> dict[str, Any]:
        query = f"?limit={limit}" + (f"&id={request_id}" if request_id else "")
        result: dict[str, Any] = self._call("GET", "/sim/usage" + query)
        return result

    def requests(self, limit: int = 20) -> list[dict[str, Any]]:
        """The last request bodies the simulator received (newest last)."""
        result: list[dict[str, Any]] = self._call("GET", f"/sim/requests?limit={limit}")["data"]
        return result

    def reset(self) -> None:
        self._call("POST", "/sim/reset", {})

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10.0) as response:
            return str(response.read().decode())

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
