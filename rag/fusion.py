"""Rank fusion of the dense and lexical result lists."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Keys = npt.NDArray[np.int64]


def rrf(
    rankings: Sequence[Keys], weights: Sequence[float] | None = None, k: float = 60.0,
) -> tuple[Keys, npt.NDArray[np.float64]]:
    """Weighted reciprocal-rank fusion: score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1.

    Returns every key seen, best first (ties broken by key for a stable order).
    """
    weights = weights or [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, key in enumerate(ranking.tolist(), start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    if not scores:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    keys = np.fromiter(scores, dtype=np.int64, count=len(scores))
    vals = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    order = np.lexsort((keys, -vals))
    return keys[order], vals[order]
