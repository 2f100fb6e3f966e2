"""Outcome tables (`prompt, small_quality, large_quality[, source]`) and the fixed split.

The split is a pure function of the prompt text, so it is reproducible anywhere and a prompt
that appears twice always lands in the same part:

    bucket = int(sha256(prompt)[:8], 16) % 10
    bucket 0, 1   -> "test"   (20%, never trained or calibrated on; `frugate router eval` default)
    bucket 2      -> "calib"  (10%, policy thresholds are calibrated on the shipped model's scores)
    bucket 3..9   -> "train"  (70%, model selection by 5-fold CV, then the final fit)

CV folds inside "train" use a second, independent slice of the same hash.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["SPLITS", "OutcomeTable", "cv_fold_of", "read_outcomes", "read_prompts", "split_of"]

SPLITS = ("train", "calib", "test")
Floats = npt.NDArray[np.float64]


def _digest(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def split_of(prompt: str) -> str:
    """The fixed part ("train", "calib" or "test") a prompt belongs to."""
    bucket = int(_digest(prompt)[:8], 16) % 10
    if bucket < 2:
        return "test"
    if bucket == 2:
        return "calib"
    return "train"


def cv_fold_of(prompt: str, n_folds: int = 5) -> int:
    """The cross-validation fold of a training prompt (independent of `split_of`)."""
    return int(_digest(prompt)[8:16], 16) % n_folds


@dataclass(frozen=True)
class OutcomeTable:
    """Per-prompt outcomes of a small and a large model (quality in [0, 1])."""

    prompts: list[str]
    small: Floats
    large: Floats
    sources: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.prompts)
        if self.small.shape != (n,) or self.large.shape != (n,):
            raise ValueError("small/large must be 1-d arrays with one value per prompt")
        if self.sources and len(self.sources) != n:
            raise ValueError("sources must be empty or one per prompt")

    def __len__(self) -> int:
        return len(self.prompts)

    def take(self, idx: Sequence[int] | npt.NDArray[np.intp]) -> OutcomeTable:
        ix = np.asarray(idx, dtype=np.intp)
        return OutcomeTable(
            prompts=[self.prompts[i] for i in ix],
            small=self.small[ix],
            large=self.large[ix],
            sources=[self.sources[i] for i in ix] if self.sources else [],
        )

    def split(self, name: str) -> OutcomeTable:
        """The rows of one fixed part ("train", "calib", "test"), or all rows for "all"."""
        if name == "all":
            return self
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {(*SPLITS, 'all')}")
        return self.take([i for i, p in enumerate(self.prompts) if split_of(p) == name])

    @staticmethod
    def concat(tables: Sequence[OutcomeTable]) -> OutcomeTable:
        return OutcomeTable(
            prompts=[p for t in tables for p in t.prompts],
            small=np.concatenate([t.small for t in tables]) if tables else np.zeros(0),
            large=np.concatenate([t.large for t in tables]) if tables else np.zeros(0),
            sources=[s for t in tables for s in (t.sources or [""] * len(t))],
        )


def _raise_csv_limit() -> None:
    # Few-shot prompts can exceed csv's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def read_outcomes(path: str | Path) -> OutcomeTable:
    """Read an outcome CSV; `source` is optional (it defaults to the file's stem)."""
    _raise_csv_limit()
    path = Path(path)
    prompts: list[str] = []
    small: list[float] = []
    large: list[float] = []
    sources: list[str] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"prompt", "small_quality", "large_quality"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for row in reader:
            prompts.append(row["prompt"])
            small.append(float(row["small_quality"]))
            large.append(float(row["large_quality"]))
            sources.append(row.get("source") or path.stem)
    return OutcomeTable(prompts, np.asarray(small), np.asarray(large), sources)


def read_prompts(path: str | Path) -> list[str]:
    """Read the `prompt` column of any CSV (other columns are ignored)."""
    _raise_csv_limit()
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "prompt" not in (reader.fieldnames or []):
            raise ValueError(f"{path}: no `prompt` column")
        return [row["prompt"] for row in reader]
