"""The embedded store: entries in process memory with TTL and an LRU size bound,
persisted to one file in the data dir (on `save()`, which the owner calls
periodically and at shutdown)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import orjson

from cache.entries import CacheEntry, StoreListener

__all__ = ["MemoryStore"]


class _NullListener:
    def add(self, entry: object, vector: object) -> None:
        pass

    def remove(self, entry_ids: list[str]) -> int:
        return 0


class MemoryStore:
    def __init__(
        self,
        max_entries: int = 100_000,
        path: str | Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.path = Path(path) if path is not None else None
        self.clock = clock
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()  # LRU order, oldest first
        self._exact: dict[str, str] = {}
        self._listener: StoreListener = _NullListener()

    async def open(self, listener: StoreListener) -> None:
        self._listener = listener
        self.load()

    async def close(self) -> None:
        await self.persist()

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        now = self.clock()
        with open(self.path, "rb") as fh:
            for line in fh:
                if line.strip():
                    entry = CacheEntry.from_json(orjson.loads(line))
                    if entry.expires > now:
                        self._insert(entry)

    async def persist(self) -> None:
        """Write every live entry to `path` atomically (no-op without a path).

        Serialises on the event loop (no concurrent mutation), writes in a thread.
        """
        if self.path is None:
            return
        now = self.clock()
        blob = b"".join(
            orjson.dumps(e.to_json()) + b"\n" for e in self._entries.values() if e.expires > now
        )
        await asyncio.to_thread(_write_atomic, self.path, blob)

    def _live(self, entry_id: str | None) -> CacheEntry | None:
        entry = self._entries.get(entry_id) if entry_id is not None else None
        if entry is None:
            return None
        if entry.expires <= self.clock():
            self._drop([entry.entry_id])
            return None
        self._entries.move_to_end(entry.entry_id)
        return entry

    async def get(self, entry_id: str) -> CacheEntry | None:
        return self._live(entry_id)

    async def get_exact(self, exact: str) -> CacheEntry | None:
        return self._live(self._exact.get(exact))

    def _insert(self, entry: CacheEntry) -> None:
        old = self._exact.get(entry.exact)
        if old is not None:
            self._drop([old])
        self._entries[entry.entry_id] = entry
        self._entries.move_to_end(entry.entry_id)
        self._exact[entry.exact] = entry.entry_id
        if entry.vector is not None:
            self._listener.add(entry.indexed(), entry.vector)
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            self._drop([oldest])

    async def put(self, entry: CacheEntry) -> None:
        self._insert(entry)

    def _drop(self, entry_ids: list[str]) -> int:
        gone = []
        for entry_id in entry_ids:
            entry = self._entries.pop(entry_id, None)
            if entry is None:
                continue
            if self._exact.get(entry.exact) == entry_id:
                del self._exact[entry.exact]
            gone.append(entry_id)
        if gone:
            self._listener.remove(gone)
        return len(gone)

    async def delete(self, entry_ids: list[str]) -> int:
        return self._drop(entry_ids)

    async def purge(self, tenant: str, team: str | None = None, model: str | None = None) -> int:
        return self._drop(
            [e.entry_id for e in self._entries.values() if e.matches(tenant, team, model)]
        )

    async def expire(self) -> int:
        now = self.clock()
        return self._drop([e.entry_id for e in self._entries.values() if e.expires <= now])

    async def count(self) -> int:
        return len(self._entries)


def _write_atomic(path: Path, blob: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)
