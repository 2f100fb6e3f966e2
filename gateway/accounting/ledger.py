"""The ledger: one row per request, written in batches off the hot path.

Settlement hands each finished request's `Record` to a sink. The embedded sink queues rows in
memory and a writer task flushes them to SQL every `flush_ms` or `flush_rows`. With Redis
configured, records go to a Redis Stream first (in the same round trip as settlement) and a
consumer group moves them to SQL, so a gateway killed with SIGKILL loses nothing.
Inserts are idempotent on request_id, so a record delivered twice is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.storage.models import DailyRollup, LedgerEntry

log = logging.getLogger("frugate.ledger")
CHUNK_ROWS = 25


@dataclass(slots=True)
class Record:
    request_id: str
    ts: datetime
    tenant_id: str
    team_id: str
    key_id: str
    endpoint: str
    requested_model: str
    end_user: str | None = None
    finished_at: datetime | None = None
    pool: str | None = None
    served_model: str | None = None
    cache_status: str = "bypass"
    rag_used: bool = False
    route_decision: str | None = None
    route_score: float | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: int = 0
    baseline_micros: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: str = "ok"
    error_type: str | None = None
    # Not stored in the ledger row, used for rollups: savings split by cause.
    cache_savings_micros: int = 0
    routing_savings_micros: int = 0
    large_call: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(self)  # orjson serialises dataclasses natively (no asdict copy)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Record:
        data = orjson.loads(raw)
        for k in ("ts", "finished_at"):
            if data.get(k):
                data[k] = datetime.fromisoformat(data[k])
        return cls(**data)


_ROW_FIELDS = [c.name for c in LedgerEntry.__table__.columns]


def _row(r: Record) -> dict[str, Any]:
    d = {k: getattr(r, k) for k in _ROW_FIELDS}
    d["finished_at"] = r.finished_at or r.ts
    return d


_SUMS = ("requests", "errors", "cache_hits", "large_calls", "prompt_tokens", "completion_tokens",
         "cost_micros", "baseline_micros", "cache_savings_micros", "routing_savings_micros")


def rollup(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Sum records per (day, tenant, team, key, model) for the daily rollup table."""
    acc: dict[tuple[date, str, str, str, str], dict[str, Any]] = {}
    for r in records:
        k = (r.ts.astimezone(UTC).date(), r.tenant_id, r.team_id, r.key_id,
             r.served_model or r.requested_model)
        row = acc.get(k)
        if row is None:
            row = {"day": k[0], "tenant_id": k[1], "team_id": k[2], "key_id": k[3],
                   "model": k[4], **dict.fromkeys(_SUMS, 0)}
            acc[k] = row
        row["requests"] += 1
        row["errors"] += r.status != "ok"
        row["cache_hits"] += r.cache_status == "hit"
        row["large_calls"] += r.large_call
        row["prompt_tokens"] += r.prompt_tokens
        row["completion_tokens"] += r.completion_tokens
        row["cost_micros"] += r.cost_micros
        row["baseline_micros"] += r.baseline_micros
        row["cache_savings_micros"] += r.cache_savings_micros
        row["routing_savings_micros"] += r.routing_savings_micros
    return list(acc.values())


def _dialect_insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


async def write_records(sessions: async_sessionmaker[AsyncSession],
                        records: Sequence[Record]) -> int:
    """Insert records idempotently and add only the newly inserted ones to the rollups.

    One multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING tells which rows are new (a
    record delivered twice is written once), then one upsert adds those to the daily sums.
    """
    if not records:
        return 0
    by_id = {r.request_id: r for r in records}
    async with sessions() as s, s.begin():
        ins = _dialect_insert(s.get_bind().dialect.name)
        table = LedgerEntry.__table__
        stmt = ins(table).on_conflict_do_nothing(index_elements=["request_id"]).returning(
            table.c.request_id)
        new_ids = (await s.execute(stmt, [_row(r) for r in by_id.values()])).scalars().all()
        fresh = [by_id[i] for i in new_ids]
        if not fresh:
            return 0
        up = ins(DailyRollup.__table__)
        up = up.on_conflict_do_update(
            index_elements=["day", "tenant_id", "team_id", "key_id", "model"],
            set_={k: getattr(DailyRollup.__table__.c, k) + getattr(up.excluded, k)
                  for k in _SUMS},
        )
        await s.execute(up, rollup(fresh))
    return len(fresh)


class BatchWriter:
    """Queues records in memory and flushes them to SQL in batches.

    A failed flush keeps the batch and retries with backoff, so a database outage delays
    the ledger but loses nothing while the process lives.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], flush_ms: int = 250,
                 flush_rows: int = 500, max_buffer: int = 1_000_000) -> None:
        self.sessions = sessions
        self.flush_s = flush_ms / 1000
        self.flush_rows = flush_rows
        self.max_buffer = max_buffer
        self.buffer: list[Record] = []
        self.written = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def add(self, record: Record) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.flush_rows:
            self._wake.set()

    async def flush(self) -> None:
        async with self._lock:
            while self.buffer:
                # Small transactions: preparing rows runs on the event loop, and a few hundred
                # at once would stall the requests it serves (their p99) for tens of ms.
                batch = self.buffer[:CHUNK_ROWS]
                self.written += await write_records(self.sessions, batch)
                del self.buffer[: len(batch)]

    async def _run(self) -> None:
        delay = self.flush_s
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            try:
                await self.flush()
                delay = self.flush_s
            except Exception as exc:
                delay = min(5.0, max(delay * 2, 0.1))
                log.warning("ledger flush failed (%d rows buffered, retry in %.1fs): %s",
                            len(self.buffer), delay, exc)

    async def stop(self) -> None:
        """Write everything buffered. A flush in progress is let finish, not cancelled: a
        transaction cut off mid-way would hold SQLite's write lock."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
