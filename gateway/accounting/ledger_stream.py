"""Moving ledger events from the Redis Stream to SQL, with a consumer group.

Every gateway replica runs one consumer. An event is acknowledged (and deleted) only after
its row is committed; events left pending by a replica that died are claimed by another
after `claim_idle_ms`. Inserts are idempotent, so a claimed event written twice is one row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounting.ledger_sql import CHUNK_ROWS, write_records
from gateway.accounting.record import Record
from gateway.accounting.redis_admission import ledger_stream

log = logging.getLogger("frugate.ledger")
GROUP = "ledger-writers"


class LedgerConsumer:
    def __init__(self, client: aioredis.Redis, sessions: async_sessionmaker[AsyncSession], *,
                 prefix: str = "frugate", batch: int = 500, block_ms: int = 200,
                 claim_idle_ms: int = 30_000, flush_ms: int = 250) -> None:
        self.r = client
        self.sessions = sessions
        self.stream = ledger_stream(prefix)
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.flush_ms = flush_ms
        self.name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.written = 0
        self._recover = True  # re-read our own pending entries (after a start or a failure)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Drain what this replica can see, then stop (graceful shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.drain()

    async def drain(self) -> int:
        """Write everything currently in the stream (new and long-pending). Returns rows."""
        await self._ensure_group()
        total = 0
        while True:
            n = await self._read_new(block_ms=None)
            n += await self._claim_stale()
            total += n
            if n == 0:
                return total

    async def _ensure_group(self) -> None:
        try:
            await self.r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _run(self) -> None:
        backoff = 0.1
        since_claim = 0.0
        while True:
            try:
                await self._ensure_group()
                n = await self._read_new(block_ms=self.block_ms)
                since_claim += self.block_ms / 1000
                if 0 < n < self.batch:
                    # A read returns as soon as one event is there: without this pause a
                    # quiet replica would write one SQL transaction per request, on the
                    # event loop the requests share. Reports catch up themselves (drain).
                    await asyncio.sleep(self.flush_ms / 1000)
                    since_claim += self.flush_ms / 1000
                if since_claim * 1000 >= self.claim_idle_ms / 3:
                    since_claim = 0.0
                    await self._claim_stale()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or the database is down: retry, lose nothing
                self._recover = True
                log.warning("ledger consumer: %s (retry in %.1fs)", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)

    async def _read_new(self, block_ms: int | None) -> int:
        n = 0
        if self._recover:  # entries we read before a failed write are still ours to write
            pending: Any = await self.r.xreadgroup(GROUP, self.name, {self.stream: "0"},
                                                   count=self.batch)
            n += await self._write(pending[0][1] if pending else [])
            self._recover = False
        resp: Any = await self.r.xreadgroup(GROUP, self.name, {self.stream: ">"},
                                            count=self.batch, block=block_ms)
        return n + await self._write(resp[0][1] if resp else [])

    async def _claim_stale(self) -> int:
        try:
            res = await self.r.xautoclaim(self.stream, GROUP, self.name, self.claim_idle_ms,
                                          start_id="0-0", count=self.batch)
        except RedisError:
            return 0
        return await self._write(res[1])

    async def _write(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        # Transactions of CHUNK_ROWS rows, acknowledged one by one: preparing rows runs on
        # the event loop the requests share, and hundreds at once would stall them.
        for start in range(0, len(entries), CHUNK_ROWS):
            chunk = entries[start:start + CHUNK_ROWS]
            records, ids = [], []
            for entry_id, fields in chunk:
                ids.append(entry_id)
                raw = fields.get(b"r")
                if raw is None:
                    continue
                try:
                    records.append(Record.from_json(raw))
                except (ValueError, TypeError):
                    log.error("dropping malformed ledger event %s", entry_id)
            self.written += await write_records(self.sessions, records)
            async with self.r.pipeline(transaction=False) as pipe:
                pipe.xack(self.stream, GROUP, *ids)
                pipe.xdel(self.stream, *ids)
                await pipe.execute()
        return len(entries)
