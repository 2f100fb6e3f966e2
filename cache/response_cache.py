"""`ResponseCache`: exact lookup, then semantic lookup with verification, over a store.

The gateway computes one embedding per request and passes it in; exact lookups need
none. Every replica keeps a local `SemanticIndex` that the store keeps in sync.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from cache.entries import CacheEntry, Hit
from cache.index import IndexedEntry, SemanticIndex
from cache.keys import CacheKeys
from cache.metrics import CacheMetrics
from cache.store import CacheStore
from cache.verify import Verifier

__all__ = ["ResponseCache"]


class _IndexListener:
    """Keeps the local index (and the entries gauge) in step with the store."""

    def __init__(self, index: SemanticIndex, metrics: CacheMetrics) -> None:
        self.index = index
        self.metrics = metrics

    def add(self, entry: IndexedEntry, vector: npt.NDArray[np.float32]) -> None:
        self.index.add(entry, vector)

    def remove(self, entry_ids: list[str]) -> int:
        return self.index.remove(entry_ids)


class ResponseCache:
    """Exact + semantic response cache over a `CacheStore`.

    `k` nearest entries under the request's filter key are verified; the most similar
    accepted one is the hit. `delta` is the default false-hit budget (per-call override).
    """

    def __init__(
        self,
        store: CacheStore,
        dim: int = 384,
        verifier: Verifier | None = None,
        delta: float = 0.01,
        k: int = 1,
        clock: Callable[[], float] = time.time,
        hnsw_from: int = 20_000,
    ) -> None:
        self.store = store
        self.verifier = verifier if verifier is not None else Verifier.load()
        self.delta = delta
        self.k = k
        self.clock = clock
        self.index = SemanticIndex(dim, hnsw_from=hnsw_from)
        self.metrics = CacheMetrics()

    async def open(self) -> None:
        await self.store.open(_IndexListener(self.index, self.metrics))
        self.metrics.entries = await self.store.count()

    async def close(self) -> None:
        await self.store.close()

    async def lookup_exact(self, keys: CacheKeys) -> Hit | None:
        start = time.perf_counter()
        entry = await self.store.get_exact(keys.exact)
        if entry is not None and not _same_scope(entry, keys):
            entry = None  # cannot happen with honest keys; refuse rather than leak
        self.metrics.observe_latency((time.perf_counter() - start) * 1000)
        if entry is None:
            self.metrics.misses["exact"] += 1
            return None
        self.metrics.hits["exact"] += 1
        return Hit(entry.entry_id, entry.response, "exact", 1.0, None, entry.created)

    def _best_verified(
        self, keys: CacheKeys, vector: npt.NDArray[np.float32], delta: float | None = None
    ) -> tuple[IndexedEntry, float, float] | None:
        """The best verified local candidate as (entry, similarity, score), or None."""
        found = self.index.search(keys.filter, vector, self.k, self.clock())
        threshold = self.verifier.threshold(self.delta if delta is None else delta)
        best = None
        for cand in found:
            if cand.entry.tenant != keys.scope.tenant or cand.entry.team != keys.scope.team:
                continue
            score = self.verifier.score(keys.text, cand.entry.text, cand.similarity)
            if score >= threshold and score > 0:
                best = (cand.entry, cand.similarity, score)
                break
        if best is None and found:
            self.metrics.verifier_rejections += 1
        return best

    async def lookup_semantic(
        self, keys: CacheKeys, vector: npt.NDArray[np.float32], delta: float | None = None
    ) -> Hit | None:
        start = time.perf_counter()
        best = self._best_verified(keys, vector, delta)
        entry = await self.store.get(best[0].entry_id) if best is not None else None
        self.metrics.observe_latency((time.perf_counter() - start) * 1000)
        if best is None or entry is None:
            self.metrics.misses["semantic"] += 1
            return None
        self.metrics.hits["semantic"] += 1
        return Hit(entry.entry_id, entry.response, "semantic", best[1], best[2], entry.created)

    async def lookup(
        self,
        keys: CacheKeys,
        vector: npt.NDArray[np.float32] | None,
        semantic: bool = True,
        delta: float | None = None,
    ) -> Hit | None:
        """Exact first; then semantic when allowed and a vector is given."""
        hit = await self.lookup_exact(keys)
        if hit is None and semantic and vector is not None:
            hit = await self.lookup_semantic(keys, vector, delta)
        return hit

    async def put(
        self,
        keys: CacheKeys,
        response: dict[str, Any],
        vector: npt.NDArray[np.float32] | None = None,
        ttl_s: float = 86_400,
        entry_id: str | None = None,
    ) -> str:
        """Store a response; `vector` (of `keys.text`) makes it findable semantically."""
        now = self.clock()
        entry = CacheEntry(
            entry_id=entry_id or uuid.uuid4().hex,
            exact=keys.exact,
            filter=keys.filter,
            text=keys.text,
            response=response,
            vector=None if vector is None else np.asarray(vector, dtype=np.float32).ravel(),
            tenant=keys.scope.tenant,
            team=keys.scope.team,
            model=keys.model,
            created=now,
            expires=now + ttl_s,
        )
        await self.store.put(entry)
        self.metrics.stores += 1
        self.metrics.entries = await self.store.count()
        return entry.entry_id

    async def purge(self, tenant: str, team: str | None = None, model: str | None = None) -> int:
        """Delete a tenant's entries (optionally one team's, one model's); returns how many."""
        n = await self.store.purge(tenant, team, model)
        self.metrics.entries = await self.store.count()
        return n

    async def expire(self) -> int:
        n = await self.store.expire()
        self.index.remove(self.index.expired(self.clock()))
        self.metrics.entries = await self.store.count()
        return n


def _same_scope(entry: CacheEntry, keys: CacheKeys) -> bool:
    return entry.tenant == keys.scope.tenant and entry.team == keys.scope.team
