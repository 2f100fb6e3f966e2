"""Hybrid retrieval over one collection's chunks: dense + BM25, fused by weighted RRF,
with one round of dense pseudo-relevance feedback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rag.analysis import Analyzer
from rag.bm25 import BM25Index
from rag.dense import DenseIndex
from rag.expansion import rocchio
from rag.fusion import rrf
from rag.records import SearchMode

Keys = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RetrievalConfig:
    """Tuned on Cranfield (docs/rag.md); the defaults are what the gateway uses."""

    depth: int = 100  # candidates taken from each retriever before fusion
    rrf_k: float = 60.0
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    ivf_threshold: int = 20_000  # chunks; exact search below, IVF from here on
    # pseudo-relevance feedback in fused mode (0 chunks: off): the dense query moves towards
    # the top fused chunks (Rocchio) and the dense side is searched again
    feedback_chunks: int = 3
    feedback_weight: float = 1.0


class HybridIndex:
    """Both indexes of a collection, kept in step. Callers serialise access (one lock)."""

    def __init__(self, dim: int, config: RetrievalConfig | None = None) -> None:
        self.config = config or RetrievalConfig()
        self.dim = dim
        self.bm25 = BM25Index(Analyzer(), k1=self.config.bm25_k1, b=self.config.bm25_b)
        self.dense = DenseIndex(dim, ivf_threshold=self.config.ivf_threshold)

    def __len__(self) -> int:
        return len(self.dense)

    def add(self, keys: Keys, texts: list[str], vectors: Vectors) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        self.dense.add(keys, vectors)
        self.bm25.add(keys.tolist(), texts)

    def remove(self, keys: Keys) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        self.dense.remove(keys)
        self.bm25.remove(keys.tolist())

    def search(
        self, text: str, vector: Vectors | None, k: int, mode: SearchMode = "fused"
    ) -> tuple[Keys, npt.NDArray[np.float64]]:
        """Top-k chunk keys with their scores; `vector` may be None only for mode="bm25".

        Scores: cosine (dense), BM25 (bm25), or RRF scaled to [0, 1] (fused: 1.0 means
        ranked first by both retrievers).
        """
        if mode == "bm25":
            keys, scores = self.bm25.search(text, k)
            return keys, scores.astype(np.float64)
        if vector is None:
            raise ValueError(f"mode {mode!r} needs the query vector")
        if mode == "dense":
            keys, scores = self.dense.search(vector, k)
            return keys, scores.astype(np.float64)
        cfg = self.config
        depth = max(k, cfg.depth)
        dense_keys, _ = self.dense.search(vector, depth)
        bm25_keys, _ = self.bm25.search(text, depth)
        keys, fused = self._fuse(dense_keys, bm25_keys)
        if cfg.feedback_chunks and len(keys):
            feedback = self.dense.vectors_for(keys[: cfg.feedback_chunks])
            dense_keys, _ = self.dense.search(rocchio(vector, feedback, cfg.feedback_weight), depth)
            keys, fused = self._fuse(dense_keys, bm25_keys)
        top = (cfg.dense_weight + cfg.bm25_weight) / (cfg.rrf_k + 1.0)
        return keys[:k], fused[:k] / top

    def _fuse(self, dense_keys: Keys, bm25_keys: Keys) -> tuple[Keys, npt.NDArray[np.float64]]:
        cfg = self.config
        return rrf([dense_keys, bm25_keys], [cfg.dense_weight, cfg.bm25_weight], k=cfg.rrf_k)

    def save(self, directory: Path) -> None:
        self.dense.save(directory)
        self.bm25.save(directory)

    @classmethod
    def load(cls, directory: Path, dim: int, config: RetrievalConfig | None = None) -> HybridIndex:
        index = cls(dim, config)
        index.dense = DenseIndex.load(directory, dim, ivf_threshold=index.config.ivf_threshold)
        index.bm25 = BM25Index.load(directory, Analyzer())
        return index
