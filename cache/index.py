"""The local vector index: one faiss index per filter key, so a search never sees
entries of another scope, model or conversation context.

Groups start as an exact flat index and switch to HNSW when they grow past
`hnsw_from` entries. HNSW cannot delete, so removals there are tombstoned and the
group is rebuilt once a quarter of it is dead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np
import numpy.typing as npt

__all__ = ["Candidate", "IndexedEntry", "SemanticIndex"]


@dataclass(frozen=True, slots=True)
class IndexedEntry:
    """What a replica keeps locally for each entry: enough to search and verify."""

    entry_id: str
    filter: str
    text: str
    expires: float
    tenant: str
    team: str | None
    model: str


@dataclass(frozen=True, slots=True)
class Candidate:
    entry: IndexedEntry
    similarity: float


@dataclass
class _Group:
    dim: int
    index: faiss.Index
    hnsw: bool = False
    rows: dict[int, IndexedEntry] = field(default_factory=dict)
    vectors: dict[int, npt.NDArray[np.float32]] = field(default_factory=dict)
    dead: int = 0


class SemanticIndex:
    def __init__(self, dim: int, hnsw_from: int = 20_000, hnsw_m: int = 32) -> None:
        self.dim = dim
        self.hnsw_from = hnsw_from
        self.hnsw_m = hnsw_m
        self._groups: dict[str, _Group] = {}
        self._where: dict[str, tuple[str, int]] = {}  # entry id -> (filter, faiss id)
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._where

    def entries(self) -> list[IndexedEntry]:
        return [g.rows[row] for g in self._groups.values() for row in g.rows]

    def _flat(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _hnsw(self) -> faiss.Index:
        inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efSearch = 64
        inner.hnsw.efConstruction = 80
        return faiss.IndexIDMap2(inner)

    def add(self, entry: IndexedEntry, vector: npt.NDArray[np.float32]) -> None:
        if entry.entry_id in self._where:
            self.remove([entry.entry_id])
        vec = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        group = self._groups.get(entry.filter)
        if group is None:
            group = self._groups[entry.filter] = _Group(self.dim, self._flat())
        row = self._next_id
        self._next_id += 1
        group.index.add_with_ids(vec, np.array([row], dtype=np.int64))
        group.rows[row] = entry
        group.vectors[row] = vec[0]
        self._where[entry.entry_id] = (entry.filter, row)
        if not group.hnsw and len(group.rows) >= self.hnsw_from:
            self._rebuild(group, hnsw=True)

    def remove(self, entry_ids: list[str]) -> int:
        removed = 0
        for entry_id in entry_ids:
            where = self._where.pop(entry_id, None)
            if where is None:
                continue
            filter_key, row = where
            group = self._groups[filter_key]
            del group.rows[row]
            del group.vectors[row]
            removed += 1
            if not group.rows:
                del self._groups[filter_key]
            elif group.hnsw:
                group.dead += 1  # stays in the graph; searches skip it
                if group.dead * 4 > len(group.rows):
                    self._rebuild(group, hnsw=len(group.rows) >= self.hnsw_from // 2)
            else:
                ids = np.array([row], dtype=np.int64)
                group.index.remove_ids(ids)  # type: ignore[arg-type]  # SWIG accepts arrays
        return removed

    def _rebuild(self, group: _Group, hnsw: bool) -> None:
        group.index = self._hnsw() if hnsw else self._flat()
        group.hnsw = hnsw
        group.dead = 0
        if group.rows:
            rows = np.fromiter(group.rows, dtype=np.int64, count=len(group.rows))
            group.index.add_with_ids(np.stack([group.vectors[r] for r in rows]), rows)

    def search(
        self, filter_key: str, vector: npt.NDArray[np.float32], k: int, now: float
    ) -> list[Candidate]:
        """Up to `k` live entries under `filter_key`, most similar first."""
        group = self._groups.get(filter_key)
        if group is None:
            return []
        vec = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        want = min(k + group.dead, group.index.ntotal)
        # One query: OpenMP threads only add wake-up cost (2.5 ms vs 0.1 ms for 2k entries),
        # worse when the embedder's threads are busy. The setting is per calling thread.
        faiss.omp_set_num_threads(1)
        sims, rows = group.index.search(vec, want)
        out = []
        for sim, row in zip(sims[0].tolist(), rows[0].tolist(), strict=True):
            entry = group.rows.get(row)
            if entry is None or entry.expires <= now:
                continue
            out.append(Candidate(entry, float(sim)))
            if len(out) == k:
                break
        return out

    def expired(self, now: float) -> list[str]:
        return [
            e.entry_id for g in self._groups.values() for e in g.rows.values() if e.expires <= now
        ]
