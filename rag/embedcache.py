"""An embedder wrapper that remembers vectors on disk, keyed by the text's sha256.

For evaluation runs and re-ingestion of the same corpus: embedding is the slow step, and
the same texts come back run after run. Each call that embeds something new appends one
shard file, so saving never rewrites what is already there.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedder.base import Embedder, Vectors


class EmbeddingCache:
    def __init__(self, inner: Embedder, directory: Path) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.directory = Path(directory) / f"dim{inner.dim}"
        self._vectors: dict[str, np.ndarray] | None = None

    def embed(self, texts: Sequence[str]) -> Vectors:
        known = self._load()
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in known}
        if missing:
            fresh = self.inner.embed(list(missing.values()))
            known.update(zip(missing, fresh, strict=True))
            self.directory.mkdir(parents=True, exist_ok=True)
            shard = self.directory / f"{secrets.token_hex(8)}.npz"
            tmp = shard.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(missing)), vectors=fresh)
            tmp.replace(shard)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)

    def _load(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            for shard in sorted(self.directory.glob("*.npz")):
                if shard.name.endswith(".tmp.npz"):
                    continue
                with np.load(shard) as data:
                    self._vectors.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
        return self._vectors
