"""The router's model as plain numpy (no sklearn or torch at request time).

Two levels, stacked:

1. Feature blocks turn one prompt's `Inputs` into a few numbers each:
   - `NeighbourBlock` — the k nearest labelled prompts (cosine, in a PCA-reduced embedding
     space): their mean small quality, large quality and gain, for several k;
   - `TopicBlock`     — a softmax classifier embedding -> training `source` (e.g. an MMLU
     subject); the expected small/large quality and gain under it, and its confidence;
   - `LexicalBlock`   — two logistic heads over TF-IDF of the focus text's word uni/bigrams:
     log-odds that the small / the large model gets it right;
   - `DenseBlock`     — the same two heads over the cheap text features;
   - `TextBlock`      — the cheap text features themselves (`router.features`).
2. `StackedModel`: two boosted tree ensembles over all those columns predict P(small ok) and
   P(large ok); the score is P(large ok) - P(small ok), the expected gain from going large.
3. Free-form prompts (no answer options: outside every training benchmark but MBPP) blend
   that score with the hand-set `router.prior` (see there for why).

Blocks were fitted on the training prompts; the trees were fitted on the blocks' out-of-fold
outputs, so they learn how far to trust each block (see `router.training`). Every block is a
few arrays, saved to and loaded from an `.npz` without pickle.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from router.features import FEATURE_NAMES, focus_text, text_features, tokens
from router.prior import is_free_form, prior_gain
from router.trees import TreeEnsemble

__all__ = [
    "Block",
    "DenseBlock",
    "Inputs",
    "LexicalBlock",
    "NeighbourBlock",
    "StackedModel",
    "TextBlock",
    "TopicBlock",
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
    """Everything a block may look at for one prompt."""

    embedding: F32
    features: Floats
    terms: list[str]
    prior: float = 0.0  # `router.prior.prior_gain`, used when `free_form`
    free_form: bool = False


def make_inputs(text: str, embedding: npt.ArrayLike) -> Inputs:
    emb = np.asarray(embedding, dtype=np.float32).reshape(-1)
    free = is_free_form(text)
    return Inputs(
        embedding=emb,
        features=text_features(text),
        terms=terms(text),
        prior=prior_gain(text) if free else 0.0,  # only free-form prompts use it
        free_form=free,
    )


class Block(Protocol):
    @property
    def kind(self) -> str: ...

    def columns(self) -> list[str]: ...

    def transform(self, xs: list[Inputs]) -> Floats: ...  # (len(xs), len(columns()))

    def arrays(self) -> Arrays: ...


@dataclass(frozen=True)
class NeighbourBlock:
    proj: F32  # (dim, d) PCA projection; rows of `bank` are unit vectors in that space
    center: F32  # (dim,) mean removed before projecting
    bank: F32  # (n, d), stored as float16 on disk
    small: F32  # (n,) small model quality of each bank prompt
    large: F32  # (n,) large model quality
    ks: tuple[int, ...]
    kind: str = "knn"

    def columns(self) -> list[str]:
        return [f"knn{k}_{q}" for k in self.ks for q in ("small", "large", "gain")]

    def project(self, emb: F32) -> F32:
        z = (emb - self.center) @ self.proj
        norm = np.linalg.norm(z, axis=-1, keepdims=True)
        return np.asarray(z / np.maximum(norm, 1e-12), dtype=np.float32)

    def _stats(self, sims: F32) -> Floats:
        """Neighbour means for every k, from one row of similarities to the bank."""
        top = min(max(self.ks), sims.size)
        idx = np.argpartition(-sims, top - 1)[:top]
        idx = idx[np.argsort(-sims[idx], kind="stable")]
        cum_s, cum_l = np.cumsum(self.small[idx]), np.cumsum(self.large[idx])
        out = []
        for k in self.ks:
            n = min(k, top)
            s, lg = cum_s[n - 1] / n, cum_l[n - 1] / n
            out += [s, lg, lg - s]
        return np.asarray(out, dtype=np.float64)

    def transform(self, xs: list[Inputs]) -> Floats:
        q = self.project(np.stack([x.embedding for x in xs]))
        if len(xs) == 1:
            # BLAS gemv: 3-4x numpy's own einsum loop. Threaded BLAS waits for every helper
            # thread to be scheduled, milliseconds on a busy host: a server calls
            # `router.single_threaded_blas()` once (the gateway does).
            return self._stats(self.bank @ q[0])[None, :]
        out = np.empty((len(xs), 3 * len(self.ks)))
        for start in range(0, len(xs), 512):
            sims = q[start : start + 512] @ self.bank.T
            for i, row in enumerate(sims):
                out[start + i] = self._stats(row)
        return out

    def arrays(self) -> Arrays:
        return {
            "proj": self.proj,
            "center": self.center,
            "bank": self.bank.astype(np.float16),
            "small": self.small.astype(np.float16),
            "large": self.large.astype(np.float16),
            "ks": np.asarray(self.ks),
        }

    @classmethod
    def from_arrays(cls, a: Arrays) -> NeighbourBlock:
        return cls(
            proj=np.asarray(a["proj"], dtype=np.float32),
            center=np.asarray(a["center"], dtype=np.float32),
            bank=np.asarray(a["bank"], dtype=np.float32),
            small=np.asarray(a["small"], dtype=np.float32),
            large=np.asarray(a["large"], dtype=np.float32),
            ks=tuple(int(k) for k in a["ks"]),
        )


@dataclass(frozen=True)
class TopicBlock:
    coef: F32  # (n_topics, dim)
    intercept: F32  # (n_topics,)
    topic_small: F32  # (n_topics,) shrunk mean small quality of each training source
    topic_large: F32  # (n_topics,)
    kind: str = "topic"

    def columns(self) -> list[str]:
        return ["topic_small", "topic_large", "topic_gain", "topic_confidence"]

    def transform(self, xs: list[Inputs]) -> Floats:
        emb = np.stack([x.embedding for x in xs]).astype(np.float32)
        logits = emb @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        s, lg = p @ self.topic_small, p @ self.topic_large
        return np.column_stack([s, lg, lg - s, p.max(axis=1)]).astype(np.float64)

    def arrays(self) -> Arrays:
        return {
            "coef": self.coef,
            "intercept": self.intercept,
            "topic_small": self.topic_small,
            "topic_large": self.topic_large,
        }

    @classmethod
    def from_arrays(cls, a: Arrays) -> TopicBlock:
        f = {k: np.asarray(a[k], dtype=np.float32) for k in ("coef", "intercept")}
        return cls(
            coef=f["coef"],
            intercept=f["intercept"],
            topic_small=np.asarray(a["topic_small"], dtype=np.float32),
            topic_large=np.asarray(a["topic_large"], dtype=np.float32),
        )


@dataclass(frozen=True)
class LexicalBlock:
    vocab: dict[str, int]
    idf: F32  # (n_terms,)
    coef: F32  # (2, n_terms): row 0 = small head, row 1 = large head
    intercept: F32  # (2,)
    kind: str = "lexical"

    def columns(self) -> list[str]:
        return ["lexical_small", "lexical_large"]

    def _logits(self, x: Inputs) -> Floats:
        counts = Counter(t for t in x.terms if t in self.vocab)
        if not counts:
            return np.asarray(self.intercept, dtype=np.float64)
        idx = np.fromiter((self.vocab[t] for t in counts), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        val = (1.0 + np.log(tf)) * self.idf[idx]  # sublinear tf x idf, then L2, as in sklearn
        val /= math.sqrt(float(val @ val))
        return np.asarray(self.coef[:, idx] @ val + self.intercept, dtype=np.float64)

    def transform(self, xs: list[Inputs]) -> Floats:
        return np.stack([self._logits(x) for x in xs])

    def arrays(self) -> Arrays:
        return {"idf": self.idf, "coef": self.coef, "intercept": self.intercept}

    @classmethod
    def from_arrays(cls, a: Arrays, vocab: list[str]) -> LexicalBlock:
        return cls(
            vocab={t: i for i, t in enumerate(vocab)},
            idf=np.asarray(a["idf"], dtype=np.float32),
            coef=np.asarray(a["coef"], dtype=np.float32),
            intercept=np.asarray(a["intercept"], dtype=np.float32),
        )


@dataclass(frozen=True)
class DenseBlock:
    mean: Floats
    scale: Floats
    coef: Floats  # (2, n_features): small head, large head
    intercept: Floats  # (2,)
    kind: str = "dense"

    def columns(self) -> list[str]:
        return ["dense_small", "dense_large"]

    def transform(self, xs: list[Inputs]) -> Floats:
        z = (np.stack([x.features for x in xs]) - self.mean) / self.scale
        return np.asarray(z @ self.coef.T + self.intercept, dtype=np.float64)

    def arrays(self) -> Arrays:
        return {
            "mean": self.mean,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
        }

    @classmethod
    def from_arrays(cls, a: Arrays) -> DenseBlock:
        f = {k: np.asarray(a[k], dtype=np.float64) for k in ("mean", "scale", "coef", "intercept")}
        return cls(mean=f["mean"], scale=f["scale"], coef=f["coef"], intercept=f["intercept"])


@dataclass(frozen=True)
class TextBlock:
    """The cheap text features as they are (the trees find their own cut points)."""

    kind: str = "text"

    def columns(self) -> list[str]:
        return list(FEATURE_NAMES)

    def transform(self, xs: list[Inputs]) -> Floats:
        return np.stack([x.features for x in xs])

    def arrays(self) -> Arrays:
        return {}


@dataclass(frozen=True)
class StackedModel:
    """score = P(large ok) - P(small ok), each from trees over every block's columns.

    For a free-form prompt: (1 - prior_weight) * score + prior_weight * prior_scale * prior.
    `prior_scale` puts the prior on the model's scale (matched on the free-form training
    prompts, if any).
    """

    names: list[str]
    blocks: list[Block]
    small_head: TreeEnsemble
    large_head: TreeEnsemble
    prior_weight: float = 0.0
    prior_scale: float = 1.0

    def columns(self) -> list[str]:
        return [c for b in self.blocks for c in b.columns()]

    def level_one(self, xs: list[Inputs]) -> Floats:
        x = np.hstack([b.transform(xs) for b in self.blocks])
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def model_scores(self, xs: list[Inputs]) -> Floats:
        """The trees' score alone (no prior)."""
        x = self.level_one(xs)
        if len(xs) == 1:  # the request path: one row, both heads in one walk
            return np.array([self.gain_one(x[0])])
        return self.large_head.proba(x) - self.small_head.proba(x)

    @functools.cached_property
    def _both_heads(self) -> TreeEnsemble:
        return TreeEnsemble.concat(self.small_head, self.large_head)

    def gain_one(self, row: Floats) -> float:
        """P(large ok) - P(small ok) for one row of level-one columns."""
        leaves = self._both_heads.leaves_one(row)
        n = self.small_head.roots.size
        small = float(leaves[:n].sum()) + self.small_head.baseline
        large = float(leaves[n:].sum()) + self.large_head.baseline
        return 1.0 / (1.0 + math.exp(-large)) - 1.0 / (1.0 + math.exp(-small))

    def with_prior(self, scores: Floats, xs: list[Inputs]) -> Floats:
        free = np.fromiter((x.free_form for x in xs), dtype=bool, count=len(xs))
        prior = np.fromiter((x.prior for x in xs), dtype=np.float64, count=len(xs))
        w = self.prior_weight
        return np.where(free, (1.0 - w) * scores + w * self.prior_scale * prior, scores)

    def score_many(self, xs: list[Inputs]) -> Floats:
        if not xs:
            return np.zeros(0)
        return self.with_prior(self.model_scores(xs), xs)

    def score(self, x: Inputs) -> float:
        return float(self.score_many([x])[0])
