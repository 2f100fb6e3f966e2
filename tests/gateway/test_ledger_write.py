"""write_records: every field round-trips, duplicates are written once, rollups add up;
on SQLite and on PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.accounting.ledger import BatchWriter
from gateway.accounting.ledger_sql import CHUNK_ROWS, SqliteDirect, write_records
from gateway.accounting.record import Record
from gateway.storage import connect, create_schema
from gateway.storage.models import DailyRollup, LedgerEntry
from tests.gateway.procs import fresh_postgres


@pytest.fixture(params=["sqlite", "sqlite-direct", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"
    else:
        with fresh_postgres() as url:
            yield url


def _writer(request: pytest.FixtureRequest, engine: AsyncEngine,
            sessions: async_sessionmaker[AsyncSession]) -> SqliteDirect | Writer:
    """The engine path, or the direct SQLite writer BatchWriter uses for a SQLite file."""
    if request.node.callspec.params["db_url"] == "sqlite-direct":
        direct = SqliteDirect.for_engine(engine)
        assert direct is not None
        return direct
    return Writer(sessions)


class Writer:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def write(self, records: list[Record]) -> int:
        return await write_records(self.sessions, records)

    async def close(self) -> None:
        pass


def _full(i: int) -> Record:
    """A record where every stored field has a distinct, non-default value."""
    ts = datetime(2026, 12, 6, 10, 11, 12, 345678, tzinfo=UTC) + timedelta(seconds=i)
    return Record(request_id=f"req_{i}", ts=ts, tenant_id="ten", team_id=f"team{i % 2}",
                  key_id="key", endpoint="chat", requested_model="auto", end_user="alice",
                  finished_at=ts + timedelta(milliseconds=250), pool="large",
                  served_model="big-model", cache_status="miss", rag_used=True,
                  route_decision="large", route_score=0.625, prompt_tokens=100 + i,
                  cached_tokens=7, completion_tokens=30 + i, cost_micros=1000 + i,
                  baseline_micros=2000 + i, latency_ms=12.5, ttft_ms=3.25, status="error",
                  error_type="upstream_error", cache_savings_micros=5, routing_savings_micros=9,
                  large_call=True)


async def test_fields_round_trip_and_duplicates_are_written_once(
        db_url: str, request: pytest.FixtureRequest) -> None:
    engine, sessions = connect(db_url)
    await create_schema(engine)
    writer = _writer(request, engine, sessions)
    try:
        records = [_full(i) for i in range(CHUNK_ROWS + 3)]  # more than one statement
        assert await writer.write(records) == len(records)
        # Delivered again (with one new record): only the new one is written and rolled up.
        again = [*records[:5], _full(999)]
        assert await writer.write(again) == 1
        async with sessions() as s:
            rows = {r.request_id: r for r in (await s.scalars(select(LedgerEntry))).all()}
            rollups = (await s.scalars(select(DailyRollup))).all()
        assert len(rows) == len(records) + 1
        want = records[3]
        got = rows[want.request_id]
        for col in LedgerEntry.__table__.columns:
            value, expected = getattr(got, col.name), getattr(want, col.name)
            if isinstance(expected, datetime):
                value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
            assert value == expected, col.name
        everything = [*records, _full(999)]
        assert sum(r.requests for r in rollups) == len(everything)
        assert sum(r.cost_micros for r in rollups) == sum(r.cost_micros for r in everything)
        assert sum(r.errors for r in rollups) == len(everything)
        assert sum(r.large_calls for r in rollups) == len(everything)
        assert sum(r.routing_savings_micros for r in rollups) == 9 * len(everything)
        assert {(r.team_id, r.model) for r in rollups} == {("team0", "big-model"),
                                                          ("team1", "big-model")}
    finally:
        await writer.close()
        await engine.dispose()


async def test_a_locked_sqlite_file_delays_the_batch_and_loses_nothing(tmp_path: Path) -> None:
    engine, sessions = connect(f"sqlite+aiosqlite:///{tmp_path / 'l.db'}")
    await create_schema(engine)
    writer = BatchWriter(sessions)
    assert writer._direct is not None  # a SQLite file: the direct writer
    writer._direct.busy_timeout_ms = 100
    blocker = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    try:
        for i in range(30):
            writer.add(_full(i))
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await writer.flush()
        assert len(writer.buffer) == 30 and writer.written == 0
        blocker.execute("COMMIT")
        await writer.flush()
        assert writer.buffer == [] and writer.written == 30
        async with sessions() as s:
            assert len((await s.scalars(select(LedgerEntry.request_id))).all()) == 30
    finally:
        blocker.close()
        await writer.stop()
        await engine.dispose()
