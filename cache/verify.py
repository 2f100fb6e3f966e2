"""The second stage of a semantic hit: is the cached question really the same question?

A small gradient-boosted tree model over `cache.features` gives the probability
that (new question, cached question) are duplicates. Thresholds are calibrated on
held-apart data so that, at each listed δ, at most a δ share of accepted hits are
wrong (a one-sided upper confidence bound, not the point estimate). The artifact is
`cache/verifier.npz`, rebuilt by `frugate cache train` (see cache/train.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cache.features import FEATURE_NAMES, pair_features, pair_features_many

__all__ = ["DEFAULT_VERIFIER", "TreeEnsemble", "Verifier"]

DEFAULT_VERIFIER = Path(__file__).with_name("verifier.npz")


@dataclass(frozen=True)
class TreeEnsemble:
    """Binary gradient-boosted trees flattened into arrays (sklearn-free inference).

    Node i: go to `left[i]` when x[feature[i]] <= threshold[i], else `right[i]`;
    leaves carry `value[i]`. The log-odds is `baseline` plus one leaf value per tree.
    """

    feature: npt.NDArray[np.int32]
    threshold: npt.NDArray[np.float64]
    left: npt.NDArray[np.int32]
    right: npt.NDArray[np.int32]
    value: npt.NDArray[np.float64]
    is_leaf: npt.NDArray[np.bool_]
    roots: npt.NDArray[np.int32]
    depth: int
    baseline: float

    def log_odds(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        xs = np.asarray(x, dtype=np.float64).reshape(-1, len(FEATURE_NAMES))
        rows = np.arange(xs.shape[0])[:, None]
        node = np.broadcast_to(self.roots, (xs.shape[0], self.roots.size)).copy()
        for _ in range(self.depth):
            leaf = self.is_leaf[node]
            if leaf.all():
                break
            go_left = xs[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(leaf, node, np.where(go_left, self.left[node], self.right[node]))
        out: npt.NDArray[np.float64] = self.baseline + self.value[node].sum(axis=1)
        return out


class Verifier:
    def __init__(
        self,
        model: TreeEnsemble,
        deltas: npt.NDArray[np.float64],
        thresholds: npt.NDArray[np.float64],
        min_cosine: float,
        info: dict[str, Any] | None = None,
    ) -> None:
        order = np.argsort(deltas)
        self.model = model
        self.deltas = np.asarray(deltas, dtype=np.float64)[order]
        self.thresholds = np.asarray(thresholds, dtype=np.float64)[order]
        self.min_cosine = float(min_cosine)
        self.info = info or {}

    @classmethod
    def load(cls, path: str | Path = DEFAULT_VERIFIER) -> Verifier:
        with np.load(path, allow_pickle=False) as data:
            names = tuple(str(n) for n in data["feature_names"])
            if names != FEATURE_NAMES:
                raise ValueError(f"{path} was trained on other features: {names}")
            model = TreeEnsemble(
                feature=data["feature"].astype(np.int32),
                threshold=data["threshold"].astype(np.float64),
                left=data["left"].astype(np.int32),
                right=data["right"].astype(np.int32),
                value=data["value"].astype(np.float64),
                is_leaf=data["is_leaf"].astype(bool),
                roots=data["roots"].astype(np.int32),
                depth=int(data["depth"]),
                baseline=float(data["baseline"]),
            )
            info = {
                str(k): float(v)
                for k, v in zip(data["info_keys"], data["info_values"], strict=True)
            }
            return cls(model, data["deltas"], data["thresholds"], float(data["min_cosine"]), info)

    def save(self, path: str | Path) -> None:
        m = self.model
        np.savez_compressed(
            path,
            feature_names=np.array(FEATURE_NAMES),
            feature=m.feature,
            threshold=m.threshold,
            left=m.left,
            right=m.right,
            value=m.value,
            is_leaf=m.is_leaf,
            roots=m.roots,
            depth=np.array(m.depth),
            baseline=np.array(m.baseline),
            deltas=self.deltas,
            thresholds=self.thresholds,
            min_cosine=np.array(self.min_cosine),
            info_keys=np.array(list(self.info)),
            info_values=np.array([float(v) for v in self.info.values()]),
        )

    def threshold(self, delta: float) -> float:
        """Score threshold for a false-hit budget δ: the threshold of the largest calibrated
        δ not above the one asked for (stricter when between points); 1.0 (reject all)
        below the smallest."""
        i = int(np.searchsorted(self.deltas, delta + 1e-12, side="right")) - 1
        return 1.0 if i < 0 else float(self.thresholds[i])

    def score(self, query: str, cached: str, cosine: float) -> float:
        if cosine < self.min_cosine:
            return 0.0
        z = float(self.model.log_odds(pair_features(query, cached, cosine))[0])
        return float(1.0 / (1.0 + np.exp(-z)))

    def score_many(
        self, queries: list[str], cached: list[str], cosines: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float64]:
        cos = np.asarray(cosines, dtype=np.float64)
        z = self.model.log_odds(pair_features_many(queries, cached, cosines))
        probs: npt.NDArray[np.float64] = np.where(cos < self.min_cosine, 0.0, 1 / (1 + np.exp(-z)))
        return probs
