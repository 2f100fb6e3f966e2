from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rag.analysis import Analyzer
from rag.bm25 import BM25Index

DOCS = [
    "The wing stalls at a high angle of attack.",
    "Boundary layer transition on a flat plate in supersonic flow.",
    "Heat transfer in hypersonic flow over a blunt body.",
    "Flutter of a wing in transonic flow.",
    "Lift and drag of slender wings at supersonic speeds; wing wing wing.",
    "Buckling of thin cylindrical shells under axial compression.",
]


def reference_scores(
    docs: list[str], query: str, k1: float = 1.2, b: float = 0.75
) -> dict[int, float]:
    """BM25 written out directly (Lucene idf), to check the sparse implementation against."""
    analyzer = Analyzer()
    terms = [analyzer.terms(d) for d in docs]
    n = len(docs)
    avgdl = sum(len(t) for t in terms) / n
    scores = {}
    for i, doc_terms in enumerate(terms):
        tf = Counter(doc_terms)
        score = 0.0
        for term, qtf in Counter(analyzer.terms(query)).items():
            df = sum(1 for t in terms if term in t)
            if not df or not tf[term]:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            norm = k1 * (1 - b + b * len(doc_terms) / avgdl)
            score += qtf * idf * tf[term] * (k1 + 1) / (tf[term] + norm)
        if score > 0:
            scores[i] = score
    return scores


def ranked(index: BM25Index, query: str, k: int = 10) -> dict[int, float]:
    keys, scores = index.search(query, k)
    return dict(zip(keys.tolist(), scores.tolist(), strict=True))


@pytest.mark.parametrize("query", ["wing flow", "supersonic wings", "hypersonic heat", "shells"])
def test_scores_match_the_bm25_formula(query: str) -> None:
    index = BM25Index()
    index.add(list(range(len(DOCS))), DOCS)
    got = ranked(index, query)
    want = reference_scores(DOCS, query)
    assert set(got) == set(want)
    for key, score in want.items():
        assert got[key] == pytest.approx(score, rel=1e-5)
    keys, _ = index.search(query, 10)
    assert [want[k] for k in keys.tolist()] == sorted(want.values(), reverse=True)


def test_stemming_and_stopwords() -> None:
    assert Analyzer().terms("What are the Wings stalling?") == ["wing", "stall"]
    index = BM25Index()
    index.add([1, 2], ["stalling wings", "the of and"])
    assert list(ranked(index, "stalled wing")) == [1]
    assert ranked(index, "the and") == {}


def test_remove_gives_the_scores_of_an_index_that_never_had_the_document() -> None:
    index = BM25Index()
    index.add(list(range(len(DOCS))), DOCS)
    index.compact()  # rows now live in the main segment
    index.add([100], ["wing flutter in flow again"])  # and one pending row
    assert index.remove([3, 100, 999]) == 2
    fresh = BM25Index()
    keep = [i for i in range(len(DOCS)) if i != 3]
    fresh.add(keep, [DOCS[i] for i in keep])
    for query in ("wing flow", "flutter", "supersonic"):
        got, want = ranked(index, query), ranked(fresh, query)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-5)
    assert 3 not in index and 100 not in index and len(index) == len(DOCS) - 1


def test_many_adds_merge_segments_without_changing_results() -> None:
    rng = np.random.default_rng(1)
    words = [f"term{i}" for i in range(50)]
    texts = [" ".join(rng.choice(words, size=12)) for _ in range(5000)]
    incremental = BM25Index()
    for i, text in enumerate(texts):  # crosses the merge threshold
        incremental.add([i], [text])
    bulk = BM25Index()
    bulk.add(list(range(len(texts))), texts)
    bulk.compact()
    for query in ("term1 term2", "term7", "term3 term3 term40"):
        a_keys, a_scores = incremental.search(query, 20)
        b_keys, b_scores = bulk.search(query, 5000)
        np.testing.assert_allclose(a_scores, b_scores[:20], rtol=1e-5)
        everything = dict(zip(b_keys.tolist(), b_scores.tolist(), strict=True))
        for key, score in zip(a_keys.tolist(), a_scores.tolist(), strict=True):
            assert everything[key] == pytest.approx(score, rel=1e-5)  # ties may swap places


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    index = BM25Index(k1=1.4, b=0.6)
    index.add(list(range(len(DOCS))), DOCS)
    index.remove([0])
    index.save(tmp_path)
    loaded = BM25Index.load(tmp_path)
    assert (loaded.k1, loaded.b) == (1.4, 0.6)
    assert len(loaded) == len(DOCS) - 1
    assert ranked(loaded, "wing flow") == pytest.approx(ranked(index, "wing flow"))
    loaded.add([50], ["a new wing document"])  # vocabulary keeps growing after a load
    assert 50 in ranked(loaded, "new wing")


def test_duplicate_keys_are_refused() -> None:
    index = BM25Index()
    index.add([1], ["wing"])
    with pytest.raises(ValueError):
        index.add([1], ["wing again"])
