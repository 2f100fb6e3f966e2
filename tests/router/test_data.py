from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from router.data import OutcomeTable, cv_fold_of, read_outcomes, read_prompts, split_of


def test_split_is_a_fixed_function_of_the_prompt() -> None:
    prompts = [f"question number {i}" for i in range(5000)]
    parts = [split_of(p) for p in prompts]
    assert parts == [split_of(p) for p in prompts]
    share = {s: parts.count(s) / len(parts) for s in ("train", "calib", "test")}
    assert share["test"] == pytest.approx(0.2, abs=0.02)
    assert share["calib"] == pytest.approx(0.1, abs=0.02)
    folds = np.bincount([cv_fold_of(p) for p in prompts], minlength=5)
    assert folds.min() > 0.18 * len(prompts)


def test_read_outcomes_and_split(tmp_path: Path) -> None:
    path = tmp_path / "bench.csv"
    rows = ['"q, with comma\nand newline",1,0', "plain,0.5,1.0"]
    path.write_text("prompt,small_quality,large_quality\n" + "\n".join(rows) + "\n")
    t = read_outcomes(path)
    assert t.prompts == ["q, with comma\nand newline", "plain"]
    assert t.small.tolist() == [1.0, 0.5]
    assert t.sources == ["bench", "bench"]
    parts = [t.split(s) for s in ("train", "calib", "test")]
    assert sum(len(p) for p in parts) == len(t)
    assert read_prompts(path) == t.prompts


def test_missing_columns_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("prompt,small_quality\nx,1\n")
    with pytest.raises(ValueError, match="large_quality"):
        read_outcomes(path)
    with pytest.raises(ValueError, match="prompt"):
        (tmp_path / "noprompt.csv").write_text("text\nx\n")
        read_prompts(tmp_path / "noprompt.csv")


def test_table_take_and_concat() -> None:
    t = OutcomeTable(["a", "b", "c"], np.array([0.0, 1, 0]), np.array([1.0, 1, 1]), ["x", "y", "z"])
    both = OutcomeTable.concat([t.take([2]), t.take([0])])
    assert both.prompts == ["c", "a"]
    assert both.sources == ["z", "x"]
    with pytest.raises(ValueError):
        OutcomeTable(["a"], np.zeros(2), np.zeros(1))
