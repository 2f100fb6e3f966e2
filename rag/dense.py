"""Dense (inner-product) index over integer chunk keys: exact below a size, IVF above it.

The vectors themselves are kept in a numpy matrix (the source for rebuilds and for
persistence); faiss is the search accelerator. Small collections use an exact flat index;
from `ivf_threshold` vectors on, an IVF index with 8-bit codes (nlist ~ 2*sqrt(n), nprobe
scanning ~6% of the lists) keeps a 100k-chunk search around half a millisecond. IVF supports
add/remove by id, so documents come and go without a rebuild; it is retrained when the
collection has grown a lot since training.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

Keys = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


class DenseIndex:
    """Not thread-safe on its own: the owning collection serialises mutations."""

    def __init__(
        self, dim: int, ivf_threshold: int = 20_000, nprobe_fraction: float = 0.06,
    ) -> None:
        self.dim = dim
        self.ivf_threshold = ivf_threshold
        self.nprobe_fraction = nprobe_fraction
        self._keys = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._index: faiss.Index | None = None
        self._trained_on = 0  # collection size when the IVF quantizer was trained

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def kind(self) -> str:
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "flat"

    def add(self, keys: Keys, vectors: Vectors) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"expected vectors of shape ({len(keys)}, {self.dim})")
        if not len(keys):
            return
        self._keys = np.concatenate([self._keys, keys])
        self._vectors = np.concatenate([self._vectors, vectors])
        if len(self._keys) > 1 and not (np.diff(self._keys) > 0).all():
            order = np.argsort(self._keys, kind="stable")  # keep keys sorted for lookups
            self._keys, self._vectors = self._keys[order], self._vectors[order]
        if self._index is not None and not self._needs_rebuild():
            self._index.add_with_ids(vectors, keys)
        else:
            self._index = None  # rebuilt on next search

    def remove(self, keys: Keys) -> int:
        keys = np.asarray(keys, dtype=np.int64)
        drop = np.isin(self._keys, keys)
        if not drop.any():
            return 0
        self._keys = self._keys[~drop]
        self._vectors = self._vectors[~drop]
        if self._index is not None:
            self._index.remove_ids(faiss.IDSelectorBatch(keys))
        return int(drop.sum())

    def vectors_for(self, keys: Keys) -> Vectors:
        """The stored vectors of `keys` (in that order); used for pseudo-relevance feedback."""
        pos = np.searchsorted(self._keys, keys)
        return self._vectors[pos]

    def search(self, query: Vectors, k: int) -> tuple[Keys, npt.NDArray[np.float32]]:
        if not len(self._keys) or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        index = self._ensure_index()
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        scores, keys = index.search(q, min(k, len(self._keys)))
        ok = keys[0] >= 0
        return keys[0][ok], scores[0][ok]

    def _needs_rebuild(self) -> bool:
        n = len(self._keys)
        if self.kind == "flat":
            return n >= self.ivf_threshold
        return n > 4 * self._trained_on or n < self.ivf_threshold // 2

    def _ensure_index(self) -> faiss.Index:
        if self._index is None:
            self._index = self._build()
        return self._index

    def _build(self) -> faiss.Index:
        n = len(self._keys)
        if n < self.ivf_threshold:
            index: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        else:
            nlist = int(2 * math.sqrt(n))
            quantizer = faiss.IndexFlatIP(self.dim)
            # 8-bit scalar codes: a quarter of the memory traffic of float32 per probed list
            # (the scan is memory-bound), cosine error ~1e-3; ranks barely move
            ivf = faiss.IndexIVFScalarQuantizer(
                quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                faiss.METRIC_INNER_PRODUCT,
            )
            # k-means on a sample, few iterations: training stays ~seconds at 100k vectors
            ivf.cp.max_points_per_centroid = 32
            ivf.cp.niter = 10
            ivf.train(self._vectors)
            ivf.nprobe = max(8, int(nlist * self.nprobe_fraction))
            index = ivf
            self._trained_on = n
        index.add_with_ids(self._vectors, self._keys)
        return index

    # -- persistence ----------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "dense_keys.npy", self._keys)
        np.save(directory / "dense_vectors.npy", self._vectors)
        index = self._ensure_index()
        if self.kind == "ivf":  # the trained quantizer is worth keeping; flat is rebuilt
            faiss.write_index(index, str(directory / "dense.faiss"))
            (directory / "dense.trained").write_text(str(self._trained_on))
        else:
            (directory / "dense.faiss").unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path, dim: int, ivf_threshold: int = 20_000) -> DenseIndex:
        index = cls(dim, ivf_threshold=ivf_threshold)
        index._keys = np.load(directory / "dense_keys.npy")
        index._vectors = np.load(directory / "dense_vectors.npy")
        path = directory / "dense.faiss"
        if path.exists():
            index._index = faiss.read_index(str(path))
            index._trained_on = int((directory / "dense.trained").read_text())
        return index
