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
    Block,
    DenseBlock,
    LexicalBlock,
    NeighbourBlock,
    StackedModel,
    TextBlock,
    TopicBlock,
)
from router.policy import Calibration
from router.trees import TreeEnsemble

__all__ = ["FORMAT_VERSION", "load_artifact", "prompt_hashes", "save_artifact"]

FORMAT_VERSION = 2  # 1: linear ensemble (round 1); 2: blocks + tree heads
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
    model: StackedModel,
    calibration: Calibration,
    seen: U64,
    meta: dict[str, Any],
) -> tuple[Path, Path]:
    npz_path, json_path = _paths(path)
    arrays: dict[str, npt.NDArray[Any]] = {
        "prior.weight": np.asarray(model.prior_weight),
        "prior.scale": np.asarray(model.prior_scale),
        "calibration.scores": calibration.scores,
        "calibration.small": calibration.small,
        "calibration.large": calibration.large,
        "seen": np.sort(seen),
    }
    for head, trees in (("small_head", model.small_head), ("large_head", model.large_head)):
        for key, value in trees.arrays().items():
            arrays[f"{head}.{key}"] = value
    kinds: list[str] = []
    for name, comp in zip(model.names, model.blocks, strict=True):
        kinds.append(comp.kind)
        for key, value in comp.arrays().items():
            arrays[f"{name}.{key}"] = value
        if isinstance(comp, LexicalBlock):
            vocab = sorted(comp.vocab, key=comp.vocab.__getitem__)
            arrays[f"{name}.vocab"] = np.frombuffer("\n".join(vocab).encode("utf-8"), np.uint8)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(npz_path, allow_pickle=False, **arrays)
    doc = {
        "format": FORMAT_VERSION,
        "components": [{"name": n, "kind": k} for n, k in zip(model.names, kinds, strict=True)],
        "columns": model.columns(),
        **meta,
    }
    json_path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return npz_path, json_path


def _component(kind: str, a: dict[str, npt.NDArray[Any]]) -> Block:
    if kind == "knn":
        return NeighbourBlock.from_arrays(a)
    if kind == "topic":
        return TopicBlock.from_arrays(a)
    if kind == "dense":
        return DenseBlock.from_arrays(a)
    if kind == "text":
        return TextBlock()
    if kind == "lexical":
        vocab = bytes(a["vocab"].tobytes()).decode("utf-8").split("\n")
        return LexicalBlock.from_arrays(a, vocab)
    raise ValueError(f"unknown component kind {kind!r}")


def _sub(data: dict[str, npt.NDArray[Any]], name: str) -> dict[str, npt.NDArray[Any]]:
    prefix = name + "."
    return {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}


def load_artifact(path: str | Path) -> tuple[StackedModel, Calibration, U64, dict[str, Any]]:
    npz_path, json_path = _paths(path)
    meta: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{json_path}: unsupported router format {meta.get('format')!r}")
    with np.load(npz_path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    names = [spec["name"] for spec in meta["components"]]
    blocks = [_component(spec["kind"], _sub(data, spec["name"])) for spec in meta["components"]]
    model = StackedModel(
        names=names,
        blocks=blocks,
        small_head=TreeEnsemble.from_arrays(_sub(data, "small_head")),
        large_head=TreeEnsemble.from_arrays(_sub(data, "large_head")),
        prior_weight=float(data["prior.weight"]),
        prior_scale=float(data["prior.scale"]),
    )
    if model.columns() != meta.get("columns", model.columns()):
        raise ValueError(f"{json_path}: block columns do not match the trained heads")
    calibration = Calibration(
        scores=data["calibration.scores"].astype(np.float64),
        small=data["calibration.small"].astype(np.float64),
        large=data["calibration.large"].astype(np.float64),
    )
    return model, calibration, data["seen"].astype(np.uint64), meta
