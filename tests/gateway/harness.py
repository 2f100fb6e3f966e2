"""A real gateway for tests: uvicorn in a thread, simulated vLLM replicas as subprocesses."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from gateway.app import create_app
from gateway.config import Settings
from gateway.state import State
from gateway.tenancy import admin

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_for(pools: list[dict[str, Any]], data_dir: Path, **extra: Any) -> Settings:
    """Settings for a test gateway over the given pools (fast health checks and scrapes)."""
    base: dict[str, Any] = {
        "data_dir": str(data_dir),
        "master_key": "fk-test-master",
        "pools": pools,
        "upstream": {"health_interval_s": 0.2, "scrape_interval_s": 0.2, "retries": 2,
                     "retry_backoff_ms": 5, "eject_after_failures": 2, "eject_base_s": 0.5,
                     "eject_max_s": 2},
        "logging": {"level": "WARNING"},
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return Settings.model_validate(base)


def pool(name: str, *urls: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "model": f"sim-{name}", "replicas": list(urls),
            "price": {"input": 1.0, "output": 2.0}, **extra}


class GatewayServer:
    def __init__(self, settings: Settings, embedder: Any = None) -> None:
        self.settings = settings
        self.app = create_app(settings, embedder=embedder)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", loop="asyncio", http="httptools",
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def state(self) -> State:
        return self.app.state.frugate  # type: ignore[no-any-return]

    def start(self) -> GatewayServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway failed to start")
            time.sleep(0.02)
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the gateway's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.app.state.loop).result(timeout)

    def make_key(self, tenant: str = "acme", team: str = "ml", **key_opts: Any) -> str:
        """Create tenant/team (if missing) and a key; returns the key's plaintext."""

        async def go() -> str:
            st = self.state
            async with st.sessions() as s, s.begin():
                t = await admin.find_team(s, tenant, team)
                if t is None:
                    from sqlalchemy import select

                    from gateway.storage.models import Tenant

                    ten = (await s.scalars(select(Tenant).where(Tenant.name == tenant))).first()
                    ten = ten or await admin.create_tenant(s, tenant)
                    t = await admin.create_team(s, ten.id, team)
                new = await admin.create_key(s, t.id, **key_opts)
            await st.directory.reload_all()
            return new.plaintext

        return self.call(go())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
