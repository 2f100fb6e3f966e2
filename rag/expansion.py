"""Pseudo-relevance feedback: expand the query with what the top fused results are about.

Lexical side: RM3 (the relevance model of the feedback chunks, interpolated with the
original query). Dense side: Rocchio (the query vector moved towards the feedback chunks'
centroid). Both use the fused first pass as feedback, which is more precise than either
retriever's own top results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt


def rm3(
    query: Mapping[str, float], feedback: Sequence[Sequence[str]], n_terms: int,
    query_weight: float,
) -> dict[str, float]:
    """Query term weights mixed with the top `n_terms` of the feedback relevance model."""
    model: Counter[str] = Counter()
    for terms in feedback:
        if terms:
            for term, count in Counter(terms).items():
                model[term] += count / len(terms)
    top = model.most_common(n_terms)
    top_total = sum(w for _, w in top)
    query_total = sum(query.values())
    if not top_total or not query_total:
        return dict(query)
    out: Counter[str] = Counter()
    for term, w in query.items():
        out[term] += query_weight * w / query_total
    for term, w in top:
        out[term] += (1.0 - query_weight) * w / top_total
    return dict(out)


def rocchio(
    query: npt.NDArray[np.float32], feedback: npt.NDArray[np.float32], weight: float,
) -> npt.NDArray[np.float32]:
    """The unit vector of query + weight * mean(feedback vectors)."""
    if not len(feedback) or weight == 0:
        return query
    moved = np.asarray(query, dtype=np.float32).reshape(-1) + weight * feedback.mean(axis=0)
    norm = float(np.linalg.norm(moved))
    return (moved / norm).astype(np.float32) if norm > 0 else query
