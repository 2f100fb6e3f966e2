"""Evaluation the way the CLI works: entries go into a fresh cache, each query is looked
up with the default policy (exact, then semantic + verifier) against ALL entries."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
    score: float  # verifier score of the hit (1.0 exact); for misses, the best rejected


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
            out.append(SimResult(query_id, hit.entry_id, 1.0 if hit.score is None else hit.score))
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
    correct: int

    @property
    def precision(self) -> float:
        return self.correct / self.hits if self.hits else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.duplicates if self.duplicates else 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.pairs if self.pairs else 0.0


def pair_report(
    a_texts: Sequence[str], duplicate: Sequence[int], hits: Sequence[str | None]
) -> EvalReport:
    """Score hits of query i (`b_i`) given entries `e<j>` = `a_j`.

    A hit is correct only when pair i is a duplicate and the hit entry's text is `a_i`
    (any other entry counts as a false hit, even a plausible one).
    """
    correct = 0
    n_hits = 0
    for i, hit in enumerate(hits):
        if hit is None:
            continue
        n_hits += 1
        j = int(hit[1:])
        if duplicate[i] and " ".join(a_texts[j].split()) == " ".join(a_texts[i].split()):
            correct += 1
    return EvalReport(len(hits), int(sum(duplicate)), n_hits, correct)
