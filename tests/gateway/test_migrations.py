"""Schema migrations: a database made by an older release upgrades in place, rows kept."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text

from gateway.storage import connect
from gateway.storage.migrate import upgrade

ROW = {"request_id": "req_old", "ts": datetime(2026, 11, 1, tzinfo=UTC),
       "finished_at": datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC),
       "tenant_id": "t", "team_id": "m", "key_id": "k", "endpoint": "chat",
       "requested_model": "auto", "cache_status": "miss", "rag_used": False, "prompt_tokens": 5,
       "cached_tokens": 0, "completion_tokens": 7, "cost_micros": 42, "baseline_micros": 50,
       "latency_ms": 1.0, "status": "ok"}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_0001_ledger_upgrades_with_its_rows(dialect: str, tmp_path: Path) -> None:
    db = f"frugate_mig_{secrets.token_hex(4)}"

    async def go() -> dict[str, object]:
        if dialect == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        else:
            admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
            await admin.execute(f"CREATE DATABASE {db}")
            await admin.close()
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"
        engine, _ = connect(url)
        try:
            await upgrade(engine, "0001")
            cols = ", ".join(ROW)
            async with engine.begin() as c:
                await c.execute(text(f"INSERT INTO ledger ({cols}) VALUES "
                                     f"({', '.join(':' + k for k in ROW)})"), ROW)
            await upgrade(engine)
            async with engine.begin() as c:
                row = (await c.execute(text(
                    "SELECT cost_micros, cascade_micros FROM ledger"))).one()
            return {"cost": row[0], "cascade": row[1]}
        finally:
            await engine.dispose()
            if dialect == "postgresql":
                admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
                await admin.execute(f"DROP DATABASE IF EXISTS {db}")
                await admin.close()

    assert asyncio.run(go()) == {"cost": 42, "cascade": 0}
