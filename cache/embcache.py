"""Embeddings of evaluation texts, cached on disk so training and eval re-runs are cheap."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedder.base import Embedder, Vectors

__all__ = ["embed_cached"]


def embed_cached(
    embedder: Embedder, texts: Sequence[str], cache_dir: Path | None, chunk: int = 2048
) -> Vectors:
    """Embed `texts`, reusing vectors stored under `cache_dir` (keyed by text sha256)."""
    unique = sorted(set(texts))
    store: dict[str, np.ndarray] = {}
    path = None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        path = cache_dir / f"embeddings-{embedder.dim}.npz"
        if path.exists():
            with np.load(path) as data:
                store = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
    keys = {t: hashlib.sha256(t.encode("utf-8")).hexdigest() for t in unique}
    missing = [t for t in unique if keys[t] not in store]
    for start in range(0, len(missing), chunk):
        part = missing[start : start + chunk]
        for text, vec in zip(part, embedder.embed(part), strict=True):
            store[keys[text]] = vec
        if path is not None and (start // chunk) % 10 == 9:
            _save(path, store)
    if path is not None and missing:
        _save(path, store)
    return np.stack([store[keys[t]] for t in texts]).astype(np.float32)


def _save(path: Path, store: dict[str, np.ndarray]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=np.array(list(store)), vectors=np.stack(list(store.values())))
    tmp.replace(path)
