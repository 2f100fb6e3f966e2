"""Helpers shared by the admin, report, webhook and invalidation tests (no tests here).

Storage-dependent tests run against SQLite and the real PostgreSQL on this machine; each
PostgreSQL user gets a fresh, uniquely named database (dropped afterwards), so parallel runs
by other people never share tables. Redis tests use their own database number.
"""

from __future__ import annotations

import asyncio
import http.server
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.gateway.harness import GatewayServer, pool, settings_for

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"
REDIS_URL = "redis://127.0.0.1:6379/13"
MASTER = "fk-test-master"
BACKENDS = ["sqlite", "postgres"]


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def database_url(backend: str, data_dir: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database of the given kind."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{data_dir / 'frugate.db'}"
        return
    name = "frugate_t_" + secrets.token_hex(6)
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.format(db=name)
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def gateway_settings(urls: dict[str, str], data_dir: Path, db_url: str, **extra: Any) -> Any:
    # Budgets, reports and webhooks count spend: repeated requests must reach the replicas.
    extra = {"cache": {"enabled": False}, **extra}
    return settings_for(
        [pool("small", urls["small"], max_context=4096, aliases=["gpt-4o-mini"],
              price={"input": 0.5, "output": 1.5}),
         pool("large", urls["large"], max_context=8192, aliases=["gpt-4o"],
              price={"input": 5.0, "output": 15.0})],
        data_dir, database_url=db_url, **extra)


def admin_client(gw: GatewayServer) -> httpx.Client:
    return httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {MASTER}"},
                        timeout=30)


def key_client(gw: GatewayServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {key}"},
                        timeout=30)


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


def new_team(admin: httpx.Client, tenant: str | None = None,
             team: str | None = None) -> tuple[str, str]:
    """(tenant id, team id) of a fresh tenant and team."""
    ten = ok(admin.post("/admin/tenants", json={"name": tenant or f"t-{secrets.token_hex(4)}"}),
             201)
    tm = ok(admin.post("/admin/teams", json={"tenant_id": ten["id"],
                                             "name": team or "team"}), 201)
    return ten["id"], tm["id"]


def new_key(admin: httpx.Client, team_id: str, **opts: Any) -> dict[str, Any]:
    return ok(admin.post("/admin/keys", json={"team_id": team_id, **opts}), 201)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """A local HTTP server that records webhook POSTs; answers `statuses` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
