"""The ledger: one row per request, written in batches off the hot path.

Settlement hands each finished request's `Record` to a sink. The embedded sink queues rows in
memory and a writer task flushes them to SQL every `flush_ms` or `flush_rows`. With Redis
configured, records go to a Redis Stream first (in the same round trip as settlement) and a
consumer group moves them to SQL, so a gateway killed with SIGKILL loses nothing.
Inserts are idempotent on request_id, so a record delivered twice is written once
(`ledger_sql`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounting.ledger_sql import CHUNK_ROWS, SqliteDirect, write_records
from gateway.accounting.record import Record

__all__ = ["BatchWriter"]

log = logging.getLogger("frugate.ledger")


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
        self._direct = SqliteDirect.for_engine(sessions.kw["bind"])

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def add(self, record: Record) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.flush_rows:
            self._wake.set()

    async def flush(self) -> None:
        async with self._lock:
            while self.buffer:
                # Small transactions: preparing rows holds the GIL (on the loop, or in the
                # direct writer's thread), and a few hundred at once would stall the
                # requests being served (their p99) for milliseconds.
                batch = self.buffer[:CHUNK_ROWS]
                if self._direct is not None:
                    self.written += await self._direct.write(batch)
                else:
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
        if self._direct is not None:
            direct, self._direct = self._direct, None
            await direct.close()
