"""The scoring components of a router, as plain numpy (no sklearn or torch at request time).

Each component maps one prompt's `Inputs` to a score where higher means "more to gain from
the large model". The shipped router is a weighted sum of standardised component scores
(`Ensemble`). Every component is a few small arrays, saved to and loaded from an `.npz`
without pickle.

Components:
- `KNNScorer`    — mean (large - small) quality of the k nearest labelled prompts (cosine, in a
                   PCA-reduced embedding space to keep the bank small).
- `TopicScorer`  — softmax classifier embedding -> training source (e.g. an MMLU subject),
                   times each source's shrunk mean gain: a smooth "how hard is this topic".
- `LexicalScorer`— two logistic heads P(small ok), P(large ok) over TF-IDF of the focus text's
                   word uni/bigrams; score = P(large ok) - P(small ok).
- `DenseScorer`  — the same two heads over the cheap text features (standardised).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from router.features import focus_text, text_features, tokens

__all__ = [
    "DenseScorer",
    "Ensemble",
    "Inputs",
    "KNNScorer",
    "LexicalScorer",
    "Scorer",
    "TopicScorer",
    "make_inputs",
    "terms",
]

Floats = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
Arrays = dict[str, npt.NDArray[np.generic]]


def terms(text: str) -> list[str]:
    """Word unigrams and bigrams of the focus text: the lexical model's terms."""
    toks = tokens(focus_text(text))
    return toks + [f"{a} {b}" for a, b in itertools.pairwise(toks)]


@dataclass(frozen=True)
class Inputs:
    """Everything a component may look at for one prompt."""

    embedding: F32
    features: Floats
    terms: list[str]


def make_inputs(text: str, embedding: npt.ArrayLike) -> Inputs:
    emb = np.asarray(embedding, dtype=np.float32).reshape(-1)
    return Inputs(embedding=emb, features=text_features(text), terms=terms(text))


def _sigmoid(x: Floats | float) -> Floats:
    return np.asarray(1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64))))


class Scorer(Protocol):
    @property
    def kind(self) -> str: ...

    def score(self, x: Inputs) -> float: ...

    def score_many(self, xs: list[Inputs]) -> Floats: ...

    def arrays(self) -> Arrays: ...


@dataclass(frozen=True)
class KNNScorer:
    proj: F32  # (dim, d) PCA projection; rows of `bank` are unit vectors in that space
    center: F32  # (dim,) mean removed before projecting
    bank: F32  # (n, d), stored as float16 on disk
    gain: F32  # (n,) large - small quality of each bank prompt
    k: int
    kind: str = "knn"

    def _project(self, emb: F32) -> F32:
        z = (emb - self.center) @ self.proj
        norm = np.linalg.norm(z, axis=-1, keepdims=True)
        return np.asarray(z / np.maximum(norm, 1e-12), dtype=np.float32)

    def score(self, x: Inputs) -> float:
        # einsum runs numpy's own single-threaded loop, not BLAS: a threaded BLAS gemv waits
        # for every thread to be scheduled, which costs milliseconds on a busy host.
        sims = np.einsum("ij,j->i", self.bank, self._project(x.embedding))
        k = min(self.k, sims.size)
        return float(self.gain[np.argpartition(-sims, k - 1)[:k]].mean())

    def score_many(self, xs: list[Inputs]) -> Floats:
        q = self._project(np.stack([x.embedding for x in xs]))
        out = np.empty(len(xs))
        k = min(self.k, self.bank.shape[0])
        for start in range(0, len(xs), 512):
            sims = q[start : start + 512] @ self.bank.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            out[start : start + 512] = self.gain[top].mean(axis=1)
        return out

    def arrays(self) -> Arrays:
        return {
            "proj": self.proj,
            "center": self.center,
            "bank": self.bank.astype(np.float16),
            "gain": self.gain,
            "k": np.asarray(self.k),
        }

    @classmethod
    def from_arrays(cls, a: Arrays) -> KNNScorer:
        return cls(
            proj=np.asarray(a["proj"], dtype=np.float32),
            center=np.asarray(a["center"], dtype=np.float32),
            bank=np.asarray(a["bank"], dtype=np.float32),
            gain=np.asarray(a["gain"], dtype=np.float32),
            k=int(a["k"]),
        )


@dataclass(frozen=True)
class TopicScorer:
    coef: F32  # (n_topics, dim)
    intercept: F32  # (n_topics,)
    topic_gain: F32  # (n_topics,)
    kind: str = "topic"

    def score(self, x: Inputs) -> float:
        return float(self.score_many([x])[0])

    def score_many(self, xs: list[Inputs]) -> Floats:
        emb = np.stack([x.embedding for x in xs]).astype(np.float32)
        logits = emb @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return np.asarray(p @ self.topic_gain, dtype=np.float64)

    def arrays(self) -> Arrays:
        return {"coef": self.coef, "intercept": self.intercept, "topic_gain": self.topic_gain}

    @classmethod
    def from_arrays(cls, a: Arrays) -> TopicScorer:
        return cls(
            coef=np.asarray(a["coef"], dtype=np.float32),
            intercept=np.asarray(a["intercept"], dtype=np.float32),
            topic_gain=np.asarray(a["topic_gain"], dtype=np.float32),
        )


@dataclass(frozen=True)
class LexicalScorer:
    vocab: dict[str, int]
    idf: F32  # (n_terms,)
    coef: F32  # (2, n_terms): row 0 = small head, row 1 = large head
    intercept: F32  # (2,)
    kind: str = "lexical"

    def _logits(self, x: Inputs) -> Floats:
        counts = Counter(t for t in x.terms if t in self.vocab)
        if not counts:
            return np.asarray(self.intercept, dtype=np.float64)
        idx = np.fromiter((self.vocab[t] for t in counts), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        val = (1.0 + np.log(tf)) * self.idf[idx]  # sublinear tf x idf, then L2, as in sklearn
        val /= math.sqrt(float(val @ val))
        return np.asarray(self.coef[:, idx] @ val + self.intercept, dtype=np.float64)

    def score(self, x: Inputs) -> float:
        p = _sigmoid(self._logits(x))
        return float(p[1] - p[0])

    def score_many(self, xs: list[Inputs]) -> Floats:
        return np.array([self.score(x) for x in xs])

    def arrays(self) -> Arrays:
        return {"idf": self.idf, "coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_arrays(cls, a: Arrays, vocab: list[str]) -> LexicalScorer:
        return cls(
            vocab={t: i for i, t in enumerate(vocab)},
            idf=np.asarray(a["idf"], dtype=np.float32),
            coef=np.asarray(a["coef"], dtype=np.float32),
            intercept=np.asarray(a["intercept"], dtype=np.float32),
        )


@dataclass(frozen=True)
class DenseScorer:
    mean: Floats
    scale: Floats
    coef: Floats  # (2, n_features): small head, large head
    intercept: Floats  # (2,)
    kind: str = "dense"

    def score(self, x: Inputs) -> float:
        z = (x.features - self.mean) / self.scale
        p = _sigmoid(self.coef @ z + self.intercept)
        return float(p[1] - p[0])

    def score_many(self, xs: list[Inputs]) -> Floats:
        z = (np.stack([x.features for x in xs]) - self.mean) / self.scale
        p = _sigmoid(z @ self.coef.T + self.intercept)
        return np.asarray(p[:, 1] - p[:, 0])

    def arrays(self) -> Arrays:
        return {
            "mean": self.mean,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
        }

    @classmethod
    def from_arrays(cls, a: Arrays) -> DenseScorer:
        f = {k: np.asarray(a[k], dtype=np.float64) for k in ("mean", "scale", "coef", "intercept")}
        return cls(mean=f["mean"], scale=f["scale"], coef=f["coef"], intercept=f["intercept"])


@dataclass(frozen=True)
class Ensemble:
    """sum_i weight_i * (score_i - mean_i) / std_i, with mean/std from out-of-fold scores."""

    names: list[str]
    components: list[Scorer]
    weights: Floats
    mean: Floats
    std: Floats

    def score(self, x: Inputs) -> float:
        total = 0.0
        for c, w, m, s in zip(self.components, self.weights, self.mean, self.std, strict=True):
            if w:
                total += w * (c.score(x) - m) / s
        return total

    def score_many(self, xs: list[Inputs]) -> Floats:
        total = np.zeros(len(xs))
        for c, w, m, s in zip(self.components, self.weights, self.mean, self.std, strict=True):
            if w:
                total += w * (c.score_many(xs) - m) / s
        return total
