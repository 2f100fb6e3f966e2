"""Hybrid retrieval over one collection's chunks: dense + BM25, fused by weighted RRF."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rag.analysis import Analyzer
from rag.bm25 import BM25Index
from rag.dense import DenseIndex
from rag.expansion import rm3, rocchio
from rag.fusion import rrf
from rag.records import SearchMode

Keys = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]
TextsFor = Callable[[Keys], list[str]]  # chunk keys -> their indexed texts


@dataclass(frozen=True)
class RetrievalConfig:
    """Tuned on Cranfield (see docs/rag.md); the defaults are what the gateway uses."""

    depth: int = 100  # candidates taken from each retriever before fusion
    rrf_k: float = 60.0
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    ivf_threshold: int = 20_000  # chunks; exact search below, IVF from here on
    # pseudo-relevance feedback (fused mode only); feedback_chunks=0 turns it off
    feedback_chunks: int = 3
    feedback_terms: int = 20
    feedback_query_weight: float = 0.5  # RM3: share of the original query terms
    feedback_vector_weight: float = 1.0  # Rocchio: weight of the feedback centroid


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
        self, text: str, vector: Vectors | None, k: int, mode: SearchMode = "fused",
        texts_for: TextsFor | None = None,
    ) -> tuple[Keys, npt.NDArray[np.float64]]:
        """Top-k chunk keys with their scores; `vector` may be None only for mode="bm25".

        Fused mode with `texts_for` runs a second, expanded round (pseudo-relevance feedback).
        """
        if mode == "bm25":
            keys, scores = self.bm25.search(text, k)
            return keys, scores.astype(np.float64)
        if vector is None:
            raise ValueError(f"mode {mode!r} needs the query vector")
        if mode == "dense":
            keys, scores = self.dense.search(vector, k)
            return keys, scores.astype(np.float64)
        depth = max(k, self.config.depth)
        query = self.bm25.query_weights(text)
        keys, fused = self._fuse(vector, query, depth)
        cfg = self.config
        if cfg.feedback_chunks and texts_for is not None and len(keys):
            feedback = keys[: cfg.feedback_chunks]
            vector = rocchio(vector, self.dense.vectors_for(feedback), cfg.feedback_vector_weight)
            analyse = self.bm25.analyzer.terms
            query = rm3(
                query, [analyse(t) for t in texts_for(feedback)], cfg.feedback_terms,
                cfg.feedback_query_weight,
            )
            keys, fused = self._fuse(vector, query, depth)
        return keys[:k], fused[:k]

    def _fuse(
        self, vector: Vectors, query: dict[str, float], depth: int
    ) -> tuple[Keys, npt.NDArray[np.float64]]:
        dense_keys, _ = self.dense.search(vector, depth)
        bm25_keys, _ = self.bm25.search_terms(query, depth)
        return rrf(
            [dense_keys, bm25_keys],
            [self.config.dense_weight, self.config.bm25_weight],
            k=self.config.rrf_k,
        )

    def save(self, directory: Path) -> None:
        self.dense.save(directory)
        self.bm25.save(directory)

    @classmethod
    def load(cls, directory: Path, dim: int, config: RetrievalConfig | None = None) -> HybridIndex:
        index = cls(dim, config)
        index.dense = DenseIndex.load(directory, dim, ivf_threshold=index.config.ivf_threshold)
        index.bm25 = BM25Index.load(directory, Analyzer())
        return index
