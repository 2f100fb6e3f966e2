"""The Redis ledger stream: events read by a replica that died are written by another."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.accounting.ledger_stream import GROUP, LedgerConsumer
from gateway.accounting.record import Record
from gateway.state import connect_redis
from gateway.storage import connect, create_schema
from gateway.storage.models import LedgerEntry
from tests.gateway.procs import REDIS_URL, fresh_postgres


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    else:
        with fresh_postgres() as url:
            yield url


def _record(i: int) -> Record:
    return Record(request_id=f"req_{secrets.token_hex(6)}_{i}", ts=datetime.now(UTC),
                  tenant_id="t", team_id="tm", key_id="k", endpoint="chat",
                  requested_model="small", pool="small", prompt_tokens=10,
                  completion_tokens=i, cost_micros=100 + i)


async def test_events_of_a_dead_consumer_are_claimed_and_written_once(db_url: str) -> None:
    prefix = "fgt-" + secrets.token_hex(4)
    r = connect_redis(REDIS_URL)
    engine, sessions = connect(db_url)
    await create_schema(engine)
    try:
        dead = LedgerConsumer(r, sessions, prefix=prefix, claim_idle_ms=200)
        await dead._ensure_group()
        records = [_record(i) for i in range(25)]
        for rec in records:
            await r.xadd(dead.stream, {b"r": rec.to_json()})
        # The "dead" replica reads everything, then dies before writing or acknowledging.
        got = await r.xreadgroup(GROUP, dead.name, {dead.stream: ">"}, count=100)
        assert len(got[0][1]) == 25
        # A duplicate delivery (the same event twice) must still give one row.
        await r.xadd(dead.stream, {b"r": records[0].to_json()})

        survivor = LedgerConsumer(r, sessions, prefix=prefix, claim_idle_ms=200)
        await asyncio.sleep(0.3)
        await survivor.drain()
        async with sessions() as s:
            n = await s.scalar(select(func.count()).select_from(LedgerEntry))
            total = await s.scalar(select(func.sum(LedgerEntry.cost_micros)))
        assert n == 25 and total == sum(x.cost_micros for x in records)
        assert await r.xlen(dead.stream) == 0  # written events are acknowledged and deleted
        pending = await r.xpending(dead.stream, GROUP)
        assert pending["pending"] == 0
    finally:
        await r.delete(f"{prefix}:ledger")
        await r.aclose()
        await engine.dispose()
