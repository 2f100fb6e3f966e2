"""Saving and loading a trained router: `<name>.npz` (arrays) + `<name>.json` (metadata).

No pickle anywhere: the npz is loaded with `allow_pickle=False`, the JSON is plain data. The
lexical vocabulary travels in the npz as one UTF-8 buffer of newline-joined terms.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from router.models import (
    DenseScorer,
    Ensemble,
    KNNScorer,
    LexicalScorer,
    Scorer,
    TopicScorer,
)
from router.policy import Calibration

__all__ = ["FORMAT_VERSION", "load_artifact", "prompt_hashes", "save_artifact"]

FORMAT_VERSION = 1
U64 = npt.NDArray[np.uint64]


def prompt_hashes(prompts: Iterable[str]) -> U64:
    """64-bit prompt fingerprints, used to keep trained-on prompts out of evaluation."""
    return np.fromiter(
        (int(hashlib.sha256(p.encode("utf-8")).hexdigest()[:16], 16) for p in prompts),
        dtype=np.uint64,
    )


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in {".npz", ".json"} else p
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def save_artifact(
    path: str | Path,
    model: Ensemble,
    calibration: Calibration,
    seen: U64,
    meta: dict[str, Any],
) -> tuple[Path, Path]:
    npz_path, json_path = _paths(path)
    arrays: dict[str, npt.NDArray[Any]] = {
        "ensemble.weights": model.weights,
        "ensemble.mean": model.mean,
        "ensemble.std": model.std,
        "calibration.scores": calibration.scores,
        "calibration.small": calibration.small,
        "calibration.large": calibration.large,
        "seen": np.sort(seen),
    }
    kinds: list[str] = []
    for name, comp in zip(model.names, model.components, strict=True):
        kinds.append(comp.kind)
        for key, value in comp.arrays().items():
            arrays[f"{name}.{key}"] = value
        if isinstance(comp, LexicalScorer):
            vocab = sorted(comp.vocab, key=comp.vocab.__getitem__)
            arrays[f"{name}.vocab"] = np.frombuffer("\n".join(vocab).encode("utf-8"), np.uint8)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(npz_path, allow_pickle=False, **arrays)
    doc = {
        "format": FORMAT_VERSION,
        "components": [{"name": n, "kind": k} for n, k in zip(model.names, kinds, strict=True)],
        **meta,
    }
    json_path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return npz_path, json_path


def _component(kind: str, a: dict[str, npt.NDArray[Any]]) -> Scorer:
    if kind == "knn":
        return KNNScorer.from_arrays(a)
    if kind == "topic":
        return TopicScorer.from_arrays(a)
    if kind == "dense":
        return DenseScorer.from_arrays(a)
    if kind == "lexical":
        vocab = bytes(a["vocab"].tobytes()).decode("utf-8").split("\n")
        return LexicalScorer.from_arrays(a, vocab)
    raise ValueError(f"unknown component kind {kind!r}")


def load_artifact(path: str | Path) -> tuple[Ensemble, Calibration, U64, dict[str, Any]]:
    npz_path, json_path = _paths(path)
    meta: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{json_path}: unsupported router format {meta.get('format')!r}")
    with np.load(npz_path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    names: list[str] = []
    comps: list[Scorer] = []
    for spec in meta["components"]:
        prefix = spec["name"] + "."
        sub = {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}
        names.append(spec["name"])
        comps.append(_component(spec["kind"], sub))
    model = Ensemble(
        names=names,
        components=comps,
        weights=data["ensemble.weights"].astype(np.float64),
        mean=data["ensemble.mean"].astype(np.float64),
        std=data["ensemble.std"].astype(np.float64),
    )
    calibration = Calibration(
        scores=data["calibration.scores"].astype(np.float64),
        small=data["calibration.small"].astype(np.float64),
        large=data["calibration.large"].astype(np.float64),
    )
    return model, calibration, data["seen"].astype(np.uint64), meta
