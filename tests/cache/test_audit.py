"""Label audit: pair classes, intervals, and the precision semantic hits would need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cache.audit import audit_labels, classify, exact_tier, needed_precision, wilson
from cache.data import Pair
from gateway.cli import app


@pytest.mark.parametrize(
    ("a", "b", "name"),
    [
        ("Purpose of life ?", "purpose of life?", "identical up to case and spaces"),
        ("I'm scared. What now?", "I'm scared - what now", "punctuation only"),
        ("ethane to ethene", "ethene to ethane", "same words reordered"),
        ("best gifts for a girlfriend", "best gift for a girlfriend", "one word changed"),
        ("How do I learn C++ fast", "How can I learn Java fast", "two words changed"),
        ("What is AI?", "Who won the 1998 world cup?", "the rest"),
    ],
)
def test_classify(a: str, b: str, name: str) -> None:
    assert classify(a, b) == name


def test_audit_counts_duplicate_share_per_class() -> None:
    pairs = [Pair("a b", "A  b", 1), Pair("a b", "a B", 0), Pair("x y z", "x y w", 1)]
    classes = {c.name: c for c in audit_labels(pairs)}
    same = classes["identical up to case and spaces"]
    assert (same.pairs, same.duplicates, same.share) == (2, 1, 0.5)
    assert classes["one word changed"].share == 1.0
    assert classes["the rest"].pairs == 0


def test_wilson_contains_the_proportion_and_narrows_with_n() -> None:
    low, high = wilson(35, 42)
    assert low < 35 / 42 < high
    assert wilson(350, 420)[1] - wilson(350, 420)[0] < high - low
    assert wilson(0, 0) == (0.0, 1.0)


def test_needed_precision_reaches_the_target_exactly() -> None:
    r = needed_precision(936, 600, duplicates=4142, precision=0.99, recall=0.40)
    right = 0.40 * 4142 - 600
    semantic_hits = right / r
    assert (936 + right) / (936 + semantic_hits) == pytest.approx(0.99)
    # the exact tier alone already reaches the recall: nothing needed
    assert needed_precision(100, 50, 100, 0.99, 0.4) == 0.0
    # no exact tier to absorb false hits: the semantic hits need the target precision itself
    assert needed_precision(0, 0, 100, 0.99, 0.4) == pytest.approx(0.99)


def test_exact_tier_matches_texts_up_to_whitespace() -> None:
    pairs = [Pair("q one", "q two", 0), Pair("q two ", "q  one", 1), Pair("x", "y", 1)]
    assert exact_tier(pairs) == (2, 1)


def test_audit_cli(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"a": "Why?", "b": "why ?", "duplicate": 0},
        {"a": "a b c", "b": "a b d", "duplicate": 1},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(app, ["cache", "audit", "--pairs", str(path)])
    assert result.exit_code == 0, result.output
    assert "identical up to case and spaces" in result.output
    assert "needs semantic hits labelled duplicate at >= 0.9900" in result.output
