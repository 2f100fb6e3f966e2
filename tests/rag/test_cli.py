from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.cli import rag as rag_cli
from tests.rag.conftest import HashEmbedder, make_pdf

CORPUS = [
    {"id": "d1", "title": "Wing stall", "text": "The wing stalls at a high angle of attack."},
    {"id": "d2", "title": "Flutter", "text": "Flutter of thin wings in transonic flow."},
    {"id": "d3", "title": "Shells", "text": "Buckling of cylindrical shells under compression."},
    {"id": "d4", "title": "", "text": ""},  # empty rows exist in real corpora: skipped
]
QUERIES = [{"id": "q1", "text": "wing stall angle"}, {"id": "q2", "text": "shell buckling"}]
QRELS = [
    {"query_id": "q1", "doc_id": "d1", "relevance": 3},
    {"query_id": "q1", "doc_id": "d2", "relevance": 1},
    {"query_id": "q2", "doc_id": "d3", "relevance": 2},
]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    # the model is not what these tests are about; the formats and plumbing are
    monkeypatch.setattr(rag_cli, "_embedder", lambda cache_dir=None: HashEmbedder())
    return CliRunner()


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_ingest_files_and_corpus_then_search_formats(runner: CliRunner, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\n## Stall\n\nLift drops after the wing stalls.")
    (docs / "page.html").write_text("<html><title>Page</title><body><p>Rockets.</p></body></html>")
    (docs / "report.pdf").write_bytes(make_pdf(["Flutter report page one."]))
    (docs / "ignored.bin").write_bytes(b"\x00\x01")
    corpus = write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    data = tmp_path / "rag"
    result = runner.invoke(
        app,
        ["rag", "ingest", "-c", "aero", "--tenant", "acme", "--data-dir", str(data), "-q",
         str(docs), str(corpus)],
    )
    assert result.exit_code == 0, result.output
    assert "6 documents" in result.stdout  # 3 files + 3 non-empty corpus rows
    assert "skipped d4" in result.output

    queries = write_jsonl(tmp_path / "q.jsonl", QUERIES)
    out = tmp_path / "run.jsonl"
    result = runner.invoke(
        app,
        ["rag", "search", "--collection", "aero", "--tenant", "acme", "--data-dir", str(data),
         "--queries", str(queries), "--k", "2", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["query_id"] for r in rows] == ["q1", "q2"]
    assert all(set(r) == {"query_id", "doc_ids"} for r in rows)
    assert all(len(r["doc_ids"]) == 2 == len(set(r["doc_ids"])) for r in rows)
    assert rows[0]["doc_ids"][0] == "d1" and rows[1]["doc_ids"][0] == "d3"

    result = runner.invoke(
        app,
        ["rag", "search", "-c", "aero", "--tenant", "acme", "--data-dir", str(data),
         "--query", "wing stalls", "--k", "1", "--mode", "bm25"],
    )
    assert result.exit_code == 0, result.output
    assert "wing stalls" in result.stdout.lower()

    other = runner.invoke(  # another tenant: the collection does not exist for it
        app, ["rag", "search", "-c", "aero", "--tenant", "globex", "--data-dir", str(data),
              "--query", "wing"],
    )
    assert other.exit_code == 1 and "not found" in other.output


def test_eval_reports_three_retrievers(runner: CliRunner, tmp_path: Path) -> None:
    args = [
        "rag", "eval",
        "--corpus", str(write_jsonl(tmp_path / "c.jsonl", CORPUS)),
        "--queries", str(write_jsonl(tmp_path / "q.jsonl", QUERIES)),
        "--qrels", str(write_jsonl(tmp_path / "r.jsonl", QRELS)),
        "--quiet",
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["documents"] == 3
    for mode in ("dense", "bm25", "fused"):
        assert set(report[mode]) == {"ndcg@10", "recall@100", "queries"}
        assert report[mode]["queries"] == 2
        assert report[mode]["recall@100"] == 1.0  # 3 documents: everything is retrieved
    assert report["bm25"]["ndcg@10"] == pytest.approx(1.0)  # the lexical matches are exact
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "nDCG@10" in table.stdout and "fused" in table.stdout


def test_search_needs_exactly_one_query_source(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["rag", "search", "-c", "x", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
