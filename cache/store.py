"""The storage seam: where entries live. `MemoryStore` (embedded default, persisted to
a file) and `RedisStore` (shared by replicas) implement it."""

from __future__ import annotations

from typing import Protocol

from cache.entries import CacheEntry, StoreListener

__all__ = ["CacheStore"]


class CacheStore(Protocol):
    async def open(self, listener: StoreListener) -> None:
        """Load existing entries into `listener` and keep it informed of changes."""

    async def close(self) -> None: ...

    async def get(self, entry_id: str) -> CacheEntry | None:
        """A live entry (refreshes its LRU position), or None if gone or expired."""

    async def get_exact(self, exact: str) -> CacheEntry | None: ...

    async def put(self, entry: CacheEntry) -> None:
        """Store (replacing an entry with the same exact key); may evict others."""

    async def delete(self, entry_ids: list[str]) -> int: ...

    async def purge(self, tenant: str, team: str | None = None, model: str | None = None) -> int:
        """Delete every entry of a tenant (optionally only one team's / model's)."""

    async def expire(self) -> int:
        """Drop expired entries now; returns how many."""

    async def count(self) -> int: ...
