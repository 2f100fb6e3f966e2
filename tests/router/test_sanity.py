"""The shipped router on prompts unlike its training benchmarks (real MiniLM embeddings)."""

from __future__ import annotations

import numpy as np
import pytest

import router
from router.sanity import SANITY_LISTS, order_accuracy


def test_order_accuracy_counts_pairs_and_ties() -> None:
    assert order_accuracy([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert order_accuracy([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert order_accuracy([0.5], [0.5]) == 0.5
    assert order_accuracy([0.1, 0.5], [0.3]) == 0.5


@pytest.fixture(scope="module")
def embed() -> object:
    from embedder import MiniLMEmbedder, query_window

    model = MiniLMEmbedder()
    return lambda texts: model.embed([query_window(t) for t in texts])


@pytest.mark.parametrize("name", list(SANITY_LISTS))
def test_shipped_router_scores_hard_prompts_above_easy_ones(name: str, embed: object) -> None:
    easy, hard = SANITY_LISTS[name]
    r = router.load_default()
    prompts = [*easy, *hard]
    scores = r.score_many(prompts, embed(prompts))  # type: ignore[operator]
    assert np.all(np.isfinite(scores))
    assert order_accuracy(scores[: len(easy)], scores[len(easy) :]) >= 0.9
