"""Evaluation the way the CLI works: entries go into a fresh cache, each query is looked
up with the default policy (exact, then semantic + verifier) against ALL entries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cache.data import Pair, duplicate_clusters, same_question
from cache.keys import Scope, request_keys
from cache.response_cache import ResponseCache
from cache.store_memory import MemoryStore
from cache.verify import Verifier

__all__ = ["EvalReport", "SimResult", "pair_report", "simulate"]

EVAL_SCOPE = Scope("eval")


@dataclass(frozen=True, slots=True)
class SimResult:
    query_id: str
    hit_id: str | None
    score: float  # verifier score of the hit (1.0 exact), 0.0 for a miss
    kind: str | None = None  # "exact" | "semantic" | None


def _request(text: str) -> dict[str, object]:
    return {"model": "eval", "messages": [{"role": "user", "content": text}]}


async def _simulate(
    entries: Sequence[tuple[str, str]],
    entry_vectors: npt.NDArray[np.float32],
    queries: Sequence[tuple[str, str]],
    query_vectors: npt.NDArray[np.float32],
    verifier: Verifier | None,
    delta: float,
    k: int,
) -> list[SimResult]:
    cache = ResponseCache(
        MemoryStore(max_entries=max(len(entries), 1)),
        dim=entry_vectors.shape[1] if len(entries) else query_vectors.shape[1],
        verifier=verifier,
        delta=delta,
        k=k,
        hnsw_from=10**9,  # exact search: evaluation measures the verifier, not ANN recall
    )
    await cache.open()
    for (entry_id, text), vec in zip(entries, entry_vectors, strict=True):
        keys = request_keys(_request(text), EVAL_SCOPE)
        await cache.put(keys, {"entry": entry_id}, vec, ttl_s=10**9, entry_id=entry_id)
    out = []
    for (query_id, text), vec in zip(queries, query_vectors, strict=True):
        keys = request_keys(_request(text), EVAL_SCOPE)
        hit = await cache.lookup(keys, vec)
        if hit is None:
            out.append(SimResult(query_id, None, 0.0))
        else:
            score = 1.0 if hit.score is None else hit.score
            out.append(SimResult(query_id, hit.entry_id, score, hit.kind))
    await cache.close()
    return out


def simulate(
    entries: Sequence[tuple[str, str]],
    entry_vectors: npt.NDArray[np.float32],
    queries: Sequence[tuple[str, str]],
    query_vectors: npt.NDArray[np.float32],
    verifier: Verifier | None = None,
    delta: float = 0.01,
    k: int = 1,
) -> list[SimResult]:
    """Load `(id, text)` entries into a fresh cache and look up each `(id, text)` query."""
    return asyncio.run(
        _simulate(entries, entry_vectors, queries, query_vectors, verifier, delta, k)
    )


@dataclass(frozen=True, slots=True)
class EvalReport:
    pairs: int
    duplicates: int
    hits: int
    correct: int  # hits whose answer is right (see `pair_report`)
    caught: int  # duplicate pairs whose query got a right hit

    @property
    def precision(self) -> float:
        return self.correct / self.hits if self.hits else 1.0

    @property
    def recall(self) -> float:
        return self.caught / self.duplicates if self.duplicates else 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.pairs if self.pairs else 0.0


def pair_report(pairs: Sequence[Pair], hits: Sequence[str | None]) -> EvalReport:
    """Score the hit of each query `b_i` against entries `e<j>` = `a_j`.

    A hit is right when the entry is the same question as the query by the labels of
    the file: the same text, or linked by duplicate=1 pairs (its own pair or a chain).
    Any other hit is a false hit, even a plausible one the labels say nothing about.
    Recall is the share of duplicate pairs whose query got a right hit.
    """
    clusters = duplicate_clusters(pairs)
    correct = caught = n_hits = 0
    for i, hit in enumerate(hits):
        if hit is None:
            continue
        n_hits += 1
        if same_question(pairs[i].b, pairs[int(hit[1:])].a, clusters):
            correct += 1
            caught += pairs[i].duplicate
    return EvalReport(len(hits), sum(p.duplicate for p in pairs), n_hits, correct, caught)
