from __future__ import annotations

import math

import pytest

from rag import evaluate_run, ndcg_at_k, recall_at_k


def test_ndcg_by_hand() -> None:
    judgments = {"a": 3, "b": 1, "c": 2}
    ranked = ["b", "x", "a"]
    dcg = 1 / math.log2(2) + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, judgments, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["a", "c", "b"], judgments, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "a"], judgments, 1) == 0.0
    assert ndcg_at_k(["a"], {"a": 0}, 10) == 0.0


def test_recall_counts_only_positive_judgments() -> None:
    judgments = {"a": 2, "b": 1, "z": 0}
    assert recall_at_k(["a", "z", "q"], judgments, 100) == 0.5
    assert recall_at_k(["q", "a", "b"], judgments, 2) == 0.5


def test_evaluate_run_averages_over_judged_queries() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    run = {"q1": ["a"], "q2": ["x", "y"]}
    result = evaluate_run(run, qrels)
    assert result == {"ndcg@10": 0.5, "recall@100": 0.5, "queries": 2}
