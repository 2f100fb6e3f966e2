from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import router as router_cli
from router.data import read_outcomes
from tests.router.conftest import FakeEmbedder, synthetic_table, write_table

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fake_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI's formats and plumbing are under test here, not MiniLM (covered in tests/embedder).
    monkeypatch.setattr(router_cli, "_make_embedder", FakeEmbedder)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("router-cli")
    a = write_table(tmp / "a.csv", synthetic_table(300, seed=1))
    b = write_table(tmp / "b.csv", synthetic_table(200, seed=2))
    mp = pytest.MonkeyPatch()
    mp.setattr(router_cli, "_make_embedder", FakeEmbedder)
    try:
        res = runner.invoke(
            router_cli.app,
            ["train", "--data", str(a), str(b), "--out", str(tmp / "r.npz"), "--cache-dir", ""],
        )
    finally:
        mp.undo()
    assert res.exit_code == 0, res.output
    assert "stacked" in res.output
    return tmp / "r.npz", a


def test_train_writes_npz_and_json(trained: tuple[Path, Path]) -> None:
    art, _ = trained
    assert art.exists() and art.with_suffix(".json").exists()
    meta = art.with_suffix(".json").read_text()
    assert "frugate router train --data" in meta and "a.csv" in meta and "b.csv" in meta


def test_score_writes_prompt_and_score(trained: tuple[Path, Path], tmp_path: Path) -> None:
    art, _ = trained
    src = tmp_path / "in.csv"
    prompts = ['has "quotes", commas\nand a newline', "explain the integral theorem proof", "x"]
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt"])
        w.writerows([[i, p] for i, p in enumerate(prompts)])
    out = tmp_path / "out.csv"
    res = runner.invoke(
        router_cli.app,
        ["score", "--in", str(src), "--out", str(out), "--router", str(art), "--cache-dir", ""],
    )
    assert res.exit_code == 0, res.output
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["prompt", "score"]
    assert [r[0] for r in rows[1:]] == prompts
    scores = [float(r[1]) for r in rows[1:]]
    assert len(scores) == 3
    # the synthetic "hard" words gain far more from the large model
    assert scores[1] > scores[2]


def test_eval_reports_router_random_oracle_and_policies(trained: tuple[Path, Path]) -> None:
    art, a = trained
    res = runner.invoke(
        router_cli.app, ["eval", "--data", str(a), "--router", str(art), "--cache-dir", ""]
    )
    assert res.exit_code == 0, res.output
    n_test = len(read_outcomes(a).split("test"))
    assert f"rows: {n_test}" in res.output  # split auto = rows neither trained nor calibrated on
    for word in ("APGR", "CPT(50%)", "CPT(95%)", "router", "random", "oracle", "auto-quality"):
        assert word in res.output
    random_line = next(ln for ln in res.output.splitlines() if ln.startswith("random"))
    assert random_line.split()[1] == "0.5000"


def test_eval_on_all_rows_and_policy_file(trained: tuple[Path, Path], tmp_path: Path) -> None:
    art, a = trained
    pol = tmp_path / "p.yaml"
    pol.write_text("router:\n  policies:\n    half: {large_share: 0.5}\n")
    res = runner.invoke(
        router_cli.app,
        ["eval", "--data", str(a), "--router", str(art), "--split", "all",
         "--policies", str(pol), "--cache-dir", ""],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "rows: 300" in res.output
    assert "half" in res.output and "auto-cheap" not in res.output
