"""From outcome CSVs to a shipped artifact (what `frugate router train` runs)."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from embedder.base import Embedder
from router.artifact import prompt_hashes, save_artifact
from router.data import OutcomeTable, read_outcomes
from router.embeddings import embed_prompts
from router.policy import Calibration
from router.training import TrainConfig, TrainResult, cv_folds, prepare, train_router

__all__ = ["build_router"]

Step = Callable[[str], None]

SPLIT_DOC = (
    "bucket = int(sha256(prompt)[:8], 16) % 10; 0-1 test (never trained or calibrated on), "
    "2 calib (policy thresholds), 3-9 train (5-fold CV by int(sha256[8:16], 16) % 5, then fit)"
)


def _without(table: OutcomeTable, sources: set[str]) -> OutcomeTable:
    if not sources:
        return table
    return table.take([i for i, s in enumerate(table.sources) if s not in sources])


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_router(
    data: Sequence[str | Path],
    out: str | Path,
    make_embedder: Callable[[], Embedder],
    *,
    cache_dir: Path | None = None,
    config: TrainConfig | None = None,
    step: Step | None = None,
    command: str = "",
    exclude_sources: Sequence[str] = (),
) -> tuple[TrainResult, dict[str, Any]]:
    """Train on the "train" part of each table, calibrate on "calib", save to `out`.

    Rows whose `source` is in `exclude_sources` are neither trained nor calibrated on (for
    outcome data known to be broken); evaluation still sees them.
    """
    say = step or (lambda _msg: None)
    paths = [Path(p) for p in data]
    tables = [_without(read_outcomes(p), set(exclude_sources)) for p in paths]
    train_parts = [t.split("train") for t in tables]
    calib_parts = [t.split("calib") for t in tables]

    def embed(t: OutcomeTable) -> np.ndarray:
        return embed_prompts(t.prompts, make_embedder, cache_dir=cache_dir)

    say("embedding prompts")
    train = prepare(train_parts, [embed(t) for t in train_parts])
    calib_table = OutcomeTable.concat(calib_parts)
    calib_emb = np.vstack([embed(t) for t in calib_parts])
    cfg = config or TrainConfig()
    result = train_router(
        train, cv_folds([p for t in train_parts for p in t.prompts], cfg.n_folds), cfg, say
    )

    say("calibrating on the calib part")
    calib = prepare([calib_table], [calib_emb])
    calibration = Calibration(
        scores=result.model.score_many(calib.inputs()),
        small=calib_table.small,
        large=calib_table.large,
    )
    seen = prompt_hashes([p for t in (*train_parts, *calib_parts) for p in t.prompts])
    meta: dict[str, Any] = {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "python": platform.python_version(),
        "embedder": "all-MiniLM-L6-v2 (max_seq_length 256) of embedder.query_window(prompt) "
        "(first 32 + last word pieces); text features read the full prompt",
        "split": SPLIT_DOC,
        "data": [
            {
                "file": p.name,
                "sha256": _file_sha(p),
                "rows": len(t),
                "train": len(tr),
                "calib": len(ca),
                "test": len(t) - len(tr) - len(ca),
            }
            for p, t, tr, ca in zip(paths, tables, train_parts, calib_parts, strict=True)
        ],
        "excluded_sources": sorted(exclude_sources),
        **result.summary(),
        "calibration_rows": len(calib_table),
    }
    save_artifact(out, result.model, calibration, seen, meta)
    return result, meta
