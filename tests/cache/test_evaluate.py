from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cache.data import Pair, split_of
from cache.evaluate import pair_report
from gateway.cli import app


def test_pair_report_counts_label_linked_hits_only() -> None:
    pairs = [
        Pair("How old is the sun?", "What is the age of the sun?", 1),
        Pair("What is the age of the sun?", "How old is our sun?", 1),  # chained duplicate
        Pair("Is tea healthy?", "Is coffee healthy?", 0),
        Pair("What is 2+2?", "Is tea healthy?", 0),
    ]
    # q0 -> own entry (right), q1 -> e0 (linked by labels: right),
    # q2 -> e0 (wrong), q3 -> e2 (same text: right, but pair 3 is no duplicate)
    report = pair_report(pairs, ["e0", "e0", "e0", "e2"])
    assert (report.hits, report.correct, report.caught, report.duplicates) == (4, 3, 2, 2)
    assert report.precision == 0.75 and report.recall == 1.0 and report.hit_rate == 1.0
    assert pair_report(pairs, [None] * 4).precision == 1.0


def test_split_is_reproducible_and_keeps_texts_apart() -> None:
    pairs = [Pair(f"q{i}", f"q{i + 1}", i % 2) for i in range(0, 200, 2)]
    pairs += [Pair("q0", "shared", 1)]  # joins q0's component: must land in the same split
    names = split_of(pairs)
    assert names == split_of(pairs)
    assert names[-1] == names[0]
    assert set(names) <= {"train", "calib", "dev"}


def test_simulate_cli_formats(tmp_path: Path) -> None:
    entries = tmp_path / "e.jsonl"
    queries = tmp_path / "q.jsonl"
    out = tmp_path / "r.jsonl"
    entries.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "text": "What is the capital of France?"},
                {"id": "b", "text": "How do I bake sourdough bread?"},
            ]
        )
        + "\n"
    )
    queries.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "1", "text": "What is the capital of France?"},
                {"id": "2", "text": "Which rocket engines use liquid hydrogen?"},
            ]
        )
        + "\n"
    )
    result = CliRunner().invoke(
        app,
        [
            "cache",
            "simulate",
            "--entries",
            str(entries),
            "--queries",
            str(queries),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {"query_id": "1", "hit_id": "a", "score": 1.0}
    assert rows[1]["query_id"] == "2" and rows[1]["hit_id"] is None
    assert isinstance(rows[1]["score"], float)
