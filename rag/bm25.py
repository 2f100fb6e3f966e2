"""A BM25 inverted index over integer chunk keys, built on scipy sparse columns.

Layout: one compacted *main* segment (CSC: chunk rows x term columns, values = term
frequency) plus a small *pending* buffer of recently added rows that is compiled into its
own segment on the next search. The buffer is merged into main once it grows past a
fraction of it, so adding a document never rebuilds the whole index. Deletes flip an
`alive` bit; collection statistics (df, N, average length) are recomputed lazily from live
rows so scores after a delete equal those of an index that never held the document.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import sparse

from rag.analysis import Analyzer

Keys = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]


@dataclass
class _Segment:
    keys: Keys  # sorted ascending
    lengths: npt.NDArray[np.float32]
    alive: npt.NDArray[np.bool_]
    matrix: sparse.csc_matrix  # rows x vocab-at-build-time, tf values
    # the matrix with BM25 tf-saturation values instead of tfs; valid for one avgdl/k1/b
    impacts: sparse.csc_matrix | None = field(default=None, repr=False)
    impacts_for: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def impact_matrix(self, avgdl: float, k1: float, b: float) -> sparse.csc_matrix:
        """Recomputed when the collection statistics changed since the last search. A big
        segment keeps its impacts while the average length drifts less than 0.5 %: each
        upload would otherwise cost the next search a pass over every posting, and the
        scores move by less than 0.5 % * b."""
        cached_avgdl, cached_k1, cached_b = self.impacts_for
        drift = abs(avgdl - cached_avgdl) / cached_avgdl if cached_avgdl else 1.0
        tolerance = 0.005 if self.matrix.nnz > 1_000_000 else 0.0
        if self.impacts is None or (k1, b) != (cached_k1, cached_b) or drift > tolerance:
            m = self.matrix
            norm = k1 * (1.0 - b + b * self.lengths / avgdl)
            values = (m.data * (k1 + 1.0) / (m.data + norm[m.indices])).astype(np.float32)
            self.impacts = sparse.csc_matrix((values, m.indices, m.indptr), shape=m.shape)
            self.impacts_for = (avgdl, k1, b)
        return self.impacts

    @classmethod
    def from_csr(cls, keys: Keys, csr: sparse.csr_matrix) -> _Segment:
        order = np.argsort(keys, kind="stable")
        csr = csr[order]
        lengths = np.asarray(csr.sum(axis=1), dtype=np.float32).ravel()
        return cls(keys[order], lengths, np.ones(len(keys), dtype=bool), csr.tocsc())

    @classmethod
    def empty(cls) -> _Segment:
        return cls.from_csr(np.zeros(0, np.int64), sparse.csr_matrix((0, 0), dtype=np.float32))

    def live_csr(self, n_terms: int) -> tuple[Keys, sparse.csr_matrix]:
        live = np.flatnonzero(self.alive)
        csr = self.matrix.tocsr()[live]
        csr.resize((len(live), n_terms))
        return self.keys[live], csr


def _rows_to_csr(
    rows: Sequence[tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]], n_terms: int
) -> sparse.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r[0]) for r in rows], out=indptr[1:])
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
    data = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(rows), n_terms))


class BM25Index:
    """BM25 (Lucene's idf, k1/b saturation) over chunk keys. Not thread-safe: callers lock."""

    def __init__(self, analyzer: Analyzer | None = None, k1: float = 1.2, b: float = 0.75) -> None:
        self.analyzer = analyzer or Analyzer()
        self.k1 = k1
        self.b = b
        self._vocab: dict[str, int] = {}
        self._main = _Segment.empty()
        self._pending: dict[int, tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]] = {}
        self._pending_seg: _Segment | None = None
        self._where: dict[int, int] = {}  # key -> 0 (main) / 1 (pending), live keys only
        self._df = np.zeros(0, dtype=np.float64)
        self._total_len = 0.0
        self._stats_dirty = False

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: int) -> bool:
        return key in self._where

    # -- mutation -----------------------------------------------------------------------

    def add(self, keys: Sequence[int], texts: Sequence[str]) -> None:
        for key, text in zip(keys, texts, strict=True):
            self.add_terms(key, self.analyzer.terms(text))

    def add_terms(self, key: int, terms: Iterable[str]) -> None:
        if key in self._where:
            raise ValueError(f"key {key} already indexed")
        counts = Counter(terms)
        ids = np.fromiter((self._term_id(t) for t in counts), dtype=np.int32, count=len(counts))
        tfs = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        if len(self._df) < len(self._vocab):
            self._df = np.concatenate([self._df, np.zeros(len(self._vocab) - len(self._df))])
        self._df[ids] += 1
        self._total_len += float(tfs.sum())
        self._pending[key] = (ids, tfs)
        self._pending_seg = None
        self._where[key] = 1
        if len(self._pending) > max(2048, len(self._main.keys) // 8):
            self._merge()

    def remove(self, keys: Iterable[int]) -> int:
        removed = 0
        for key in keys:
            where = self._where.pop(key, None)
            if where is None:
                continue
            removed += 1
            if where == 1:
                ids, tfs = self._pending.pop(key)
                self._df[ids] -= 1
                self._total_len -= float(tfs.sum())
                self._pending_seg = None
            else:
                pos = int(np.searchsorted(self._main.keys, key))
                self._main.alive[pos] = False
                self._stats_dirty = True
        return removed

    def _term_id(self, term: str) -> int:
        tid = self._vocab.get(term)
        if tid is None:
            tid = self._vocab[term] = len(self._vocab)
        return tid

    def _merge(self) -> None:
        n_terms = len(self._vocab)
        keys, main = self._main.live_csr(n_terms)
        if self._pending:
            pending_keys = np.fromiter(self._pending, dtype=np.int64, count=len(self._pending))
            keys = np.concatenate([keys, pending_keys])
            main = sparse.vstack([main, _rows_to_csr(list(self._pending.values()), n_terms)])
        self._main = _Segment.from_csr(keys, sparse.csr_matrix(main))
        self._pending.clear()
        self._pending_seg = None
        self._where = dict.fromkeys(self._main.keys.tolist(), 0)
        self._recompute_stats()

    def compact(self) -> None:
        """Fold pending rows into main and drop deleted rows."""
        self._merge()

    def _recompute_stats(self) -> None:
        main = self._main
        df = np.zeros(len(self._vocab), dtype=np.float64)
        m = main.matrix
        if m.nnz:
            cols = np.repeat(np.arange(m.shape[1]), np.diff(m.indptr))
            live = main.alive[m.indices]
            df[: m.shape[1]] = np.bincount(cols[live], minlength=m.shape[1])
        total = float(main.lengths[main.alive].sum())
        for ids, tfs in self._pending.values():
            df[ids] += 1
            total += float(tfs.sum())
        self._df = df
        self._total_len = total
        self._stats_dirty = False

    # -- search -------------------------------------------------------------------------

    def query_weights(self, text: str) -> dict[str, float]:
        return {t: float(c) for t, c in Counter(self.analyzer.terms(text)).items()}

    def search(self, text: str, k: int) -> tuple[Keys, Scores]:
        return self.search_terms(self.query_weights(text), k)

    def search_terms(self, weights: Mapping[str, float], k: int) -> tuple[Keys, Scores]:
        """Top-k keys for a weighted bag of (already analysed) query terms."""
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        if self._stats_dirty:
            self._recompute_stats()
        n = len(self._where)
        if n == 0 or k <= 0:
            return empty
        avgdl = max(self._total_len / n, 1e-9)
        query: list[tuple[int, float]] = []
        for term, w in weights.items():
            tid = self._vocab.get(term)
            if tid is None or self._df[tid] <= 0:
                continue
            df = self._df[tid]
            query.append((tid, w * math.log(1.0 + (n - df + 0.5) / (df + 0.5))))
        if not query:
            return empty
        keys_out, scores_out = [], []
        for seg in self._segments():
            keys, scores = self._score_segment(seg, query, avgdl, k)
            keys_out.append(keys)
            scores_out.append(scores)
        keys = np.concatenate(keys_out)
        scores = np.concatenate(scores_out)
        order = np.lexsort((keys, -scores))[:k]
        return keys[order], scores[order]

    def _segments(self) -> list[_Segment]:
        segs = [self._main] if len(self._main.keys) else []
        if self._pending:
            if self._pending_seg is None:
                keys = np.fromiter(self._pending, dtype=np.int64, count=len(self._pending))
                rows = _rows_to_csr(list(self._pending.values()), len(self._vocab))
                self._pending_seg = _Segment.from_csr(keys, rows)
            segs.append(self._pending_seg)
        return segs

    def _score_segment(
        self, seg: _Segment, query: list[tuple[int, float]], avgdl: float, k: int
    ) -> tuple[Keys, Scores]:
        impacts = seg.impact_matrix(avgdl, self.k1, self.b)
        cols = [tid for tid, _ in query if tid < impacts.shape[1]]
        if not cols:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        weights = np.asarray([w for tid, w in query if tid < impacts.shape[1]], np.float32)
        # one sparse mat-vec over the query terms' postings (C speed, no per-term Python)
        sums = np.asarray(impacts[:, cols] @ weights).ravel()
        cand = np.flatnonzero(sums > 0)
        if not seg.alive.all():
            cand = cand[seg.alive[cand]]
        if len(cand) > k:
            cand = cand[np.argpartition(-sums[cand], k - 1)[:k]]
        return seg.keys[cand], sums[cand].astype(np.float32)

    # -- persistence ----------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        self._merge()
        m = self._main
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / "bm25.npz",
            keys=m.keys, lengths=m.lengths, indptr=m.matrix.indptr,
            indices=m.matrix.indices, data=m.matrix.data,
            shape=np.asarray(m.matrix.shape, dtype=np.int64),
        )
        vocab = sorted(self._vocab, key=self._vocab.__getitem__)
        meta = {"k1": self.k1, "b": self.b, "vocab": vocab}
        (directory / "bm25.json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, analyzer: Analyzer | None = None) -> BM25Index:
        meta = json.loads((directory / "bm25.json").read_text(encoding="utf-8"))
        index = cls(analyzer, k1=meta["k1"], b=meta["b"])
        index._vocab = {t: i for i, t in enumerate(meta["vocab"])}
        with np.load(directory / "bm25.npz") as z:
            shape = tuple(int(x) for x in z["shape"])
            matrix = sparse.csc_matrix((z["data"], z["indices"], z["indptr"]), shape=shape)
            keys = z["keys"]
            index._main = _Segment(keys, z["lengths"], np.ones(len(keys), dtype=bool), matrix)
        index._where = dict.fromkeys(keys.tolist(), 0)
        index._recompute_stats()
        return index
