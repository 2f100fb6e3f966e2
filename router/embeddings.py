"""Batch embedding of prompt lists for training and offline scoring, with an on-disk cache.

Only offline commands use this; at request time the gateway hands the router the one shared
embedding it already computed. The cache is keyed per prompt (a 64-bit sha256 prefix), so a
subset or a reordering of a known table costs nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from embedder.base import Embedder, Vectors
from embedder.minilm import DIM

__all__ = ["embed_prompts", "embed_texts"]

Progress = Callable[[int], None]


def _keys(texts: Sequence[str]) -> np.ndarray:
    return np.fromiter(
        (int.from_bytes(hashlib.sha256(t.encode("utf-8")).digest()[:8], "little") for t in texts),
        dtype=np.uint64,
        count=len(texts),
    )


def _slug(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()[:12]


def _load_store(cache_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = cache_dir / f"embeddings-{_slug(tag)}.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return z["keys"], z["vectors"]


def _save_store(cache_dir: Path, tag: str, keys: np.ndarray, vectors: np.ndarray) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"embeddings-{_slug(tag)}.npz"
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=keys, vectors=vectors)
    tmp.replace(path)


def embed_texts(
    texts: Sequence[str],
    make_embedder: Callable[[], Embedder],
    *,
    cache_dir: Path | None = None,
    tag: str = "all-MiniLM-L6-v2/256",
    batch_size: int = 128,
    progress: Progress | None = None,
) -> Vectors:
    """Embed `texts` in batches (similar lengths together, so padding stays small).

    `make_embedder` is called only if some text is not cached (loading the model is slow).
    `tag` names the embedder in the cache; change it when the vectors would change.
    """
    keys = _keys(texts)
    store = _load_store(cache_dir, tag) if cache_dir is not None else None
    out: np.ndarray | None = None
    missing = np.arange(len(texts))
    if store is not None:
        skeys, svecs = store
        order = np.argsort(skeys)
        pos = np.searchsorted(skeys, keys, sorter=order).clip(max=max(len(skeys) - 1, 0))
        hit = skeys[order[pos]] == keys if len(skeys) else np.zeros(len(keys), bool)
        out = np.zeros((len(texts), svecs.shape[1]), dtype=np.float32)
        out[hit] = svecs[order[pos[hit]]]
        missing = np.flatnonzero(~hit)
        if progress is not None and hit.any():
            progress(int(hit.sum()))
    if missing.size:
        model = make_embedder()
        if out is None:
            out = np.zeros((len(texts), model.dim), dtype=np.float32)
        by_len = missing[np.argsort([len(texts[int(i)]) for i in missing], kind="stable")]
        for start in range(0, by_len.size, batch_size):
            ix = by_len[start : start + batch_size]
            out[ix] = model.embed([texts[int(i)] for i in ix])
            if progress is not None:
                progress(len(ix))
        if cache_dir is not None:
            new_keys, first = np.unique(keys[missing], return_index=True)
            new_vecs = out[missing[first]]
            if store is not None:
                new_keys = np.concatenate([store[0], new_keys])
                new_vecs = np.vstack([store[1], new_vecs])
            _save_store(cache_dir, tag, new_keys, new_vecs)
    if out is None:  # no texts at all
        return np.zeros((0, DIM), dtype=np.float32)
    return out


def embed_prompts(
    prompts: Sequence[str],
    make_embedder: Callable[[], Embedder],
    *,
    cache_dir: Path | None = None,
    batch_size: int = 128,
    progress: Progress | None = None,
) -> Vectors:
    """The router's view of each prompt: the vector of `embedder.query_window(prompt)`,
    exactly what the gateway embeds for a request whose last user message is the prompt."""
    from embedder.window import query_window

    windows = [query_window(p) for p in prompts]
    return embed_texts(
        windows, make_embedder, cache_dir=cache_dir, batch_size=batch_size, progress=progress
    )
