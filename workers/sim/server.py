"""Run a SimApp under uvicorn (uvloop + httptools when installed)."""

from __future__ import annotations

import socket
import sys

import uvicorn

from workers.sim.app import SimApp
from workers.sim.config import SimConfig


def serve(config: SimConfig, fd: int | None = None) -> None:
    """Serve until interrupted. `fd` is an already-listening socket handed over by a parent."""
    app = SimApp(config)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_level=config.log_level,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=3,  # stalled streams must not hold a SIGTERM forever
        backlog=4096,
    )
    server = uvicorn.Server(uv_config)
    sockets = [socket.socket(fileno=fd)] if fd is not None else None
    where = f"fd {fd}" if fd is not None else f"http://{config.host}:{config.port}"
    print(
        f"frugate sim-worker (a vLLM simulator, not vLLM): model={config.model} "
        f"profile={config.profile} listening on {where}",
        file=sys.stderr,
        flush=True,
    )
    server.run(sockets=sockets)
