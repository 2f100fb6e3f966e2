"""Boosted decision trees evaluated with numpy: the router's head, without sklearn at runtime.

Training uses sklearn's `HistGradientBoostingClassifier`; `TreeEnsemble.from_sklearn` copies
its trees into flat arrays. Every tree is walked for all rows at once, one depth level per
numpy step: a leaf points to itself, so rows that reached a leaf stay put until the deepest
tree is done. A few hundred shallow trees cost tens of microseconds per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["TreeEnsemble"]

Floats = npt.NDArray[np.float64]
Arrays = dict[str, npt.NDArray[np.generic]]


@dataclass(frozen=True)
class TreeEnsemble:
    """A sum of regression trees plus a baseline: the log-odds of a binary classifier.

    Nodes of all trees live in one set of arrays; `roots[t]` is tree t's first node. At a
    split, `x[feature] <= threshold` goes to `left`, anything else (NaN included) to `right`;
    the router never produces NaN (its inputs are cleaned first).
    """

    feature: npt.NDArray[np.int32]
    threshold: Floats
    left: npt.NDArray[np.int32]
    right: npt.NDArray[np.int32]
    value: Floats
    roots: npt.NDArray[np.int32]
    baseline: float
    depth: int

    def logits(self, x: Floats) -> Floats:
        """Log-odds for each row of `x` (n_rows, n_features)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        rows = np.arange(x.shape[0])[:, None]
        nodes = np.broadcast_to(self.roots, (x.shape[0], self.roots.size))
        for _ in range(self.depth):
            go_left = x[rows, self.feature[nodes]] <= self.threshold[nodes]
            nodes = np.where(go_left, self.left[nodes], self.right[nodes])
        return np.asarray(self.value[nodes].sum(axis=1) + self.baseline, dtype=np.float64)

    def leaves_one(self, row: Floats) -> Floats:
        """Each tree's leaf value for one row (n_features,): the same walk, on 1-d arrays."""
        nodes = self.roots
        for _ in range(self.depth):
            go_left = row[self.feature[nodes]] <= self.threshold[nodes]
            nodes = np.where(go_left, self.left[nodes], self.right[nodes])
        return np.asarray(self.value[nodes])

    def proba_one(self, row: Floats) -> float:
        return 1.0 / (1.0 + math.exp(-(float(self.leaves_one(row).sum()) + self.baseline)))

    @staticmethod
    def concat(a: TreeEnsemble, b: TreeEnsemble) -> TreeEnsemble:
        """Both ensembles' trees in one (baseline 0): walk them together, split the leaves
        at `a.roots.size`."""
        shift = np.int32(a.feature.size)
        return TreeEnsemble(
            feature=np.concatenate([a.feature, b.feature]),
            threshold=np.concatenate([a.threshold, b.threshold]),
            left=np.concatenate([a.left, b.left + shift]),
            right=np.concatenate([a.right, b.right + shift]),
            value=np.concatenate([a.value, b.value]),
            roots=np.concatenate([a.roots, b.roots + shift]),
            baseline=0.0,
            depth=max(a.depth, b.depth),
        )

    def proba(self, x: Floats) -> Floats:
        return np.asarray(1.0 / (1.0 + np.exp(-self.logits(x))), dtype=np.float64)

    @classmethod
    def from_sklearn(cls, model: Any) -> TreeEnsemble:
        """Copy a fitted binary `HistGradientBoostingClassifier` (numeric features only)."""
        if len(model.classes_) != 2 or model.n_trees_per_iteration_ != 1:
            raise ValueError("expected a binary classifier")
        feature: list[int] = []
        threshold: list[float] = []
        left: list[int] = []
        right: list[int] = []
        value: list[float] = []
        roots: list[int] = []
        depth = 0
        for (predictor,) in model._predictors:  # one tree per boosting iteration
            nodes = predictor.nodes
            base = len(feature)
            roots.append(base)
            for i, node in enumerate(nodes):
                if node["is_leaf"]:
                    feature.append(0)
                    threshold.append(np.inf)  # always "left", and left is the leaf itself
                    left.append(base + i)
                    right.append(base + i)
                else:
                    if node["is_categorical"]:
                        raise ValueError("categorical splits are not supported")
                    feature.append(int(node["feature_idx"]))
                    threshold.append(float(node["num_threshold"]))
                    left.append(base + int(node["left"]))
                    right.append(base + int(node["right"]))
                value.append(float(node["value"]) if node["is_leaf"] else 0.0)
                depth = max(depth, int(node["depth"]))
        return cls(
            feature=np.asarray(feature, dtype=np.int32),
            threshold=np.asarray(threshold, dtype=np.float64),
            left=np.asarray(left, dtype=np.int32),
            right=np.asarray(right, dtype=np.int32),
            value=np.asarray(value, dtype=np.float64),
            roots=np.asarray(roots, dtype=np.int32),
            baseline=float(np.ravel(model._baseline_prediction)[0]),
            depth=depth,
        )

    def arrays(self) -> Arrays:
        return {
            "feature": self.feature,
            "threshold": self.threshold,
            "left": self.left,
            "right": self.right,
            "value": self.value,
            "roots": self.roots,
            "baseline": np.asarray(self.baseline),
            "depth": np.asarray(self.depth),
        }

    @classmethod
    def from_arrays(cls, a: Arrays) -> TreeEnsemble:
        return cls(
            feature=np.asarray(a["feature"], dtype=np.int32),
            threshold=np.asarray(a["threshold"], dtype=np.float64),
            left=np.asarray(a["left"], dtype=np.int32),
            right=np.asarray(a["right"], dtype=np.int32),
            value=np.asarray(a["value"], dtype=np.float64),
            roots=np.asarray(a["roots"], dtype=np.int32),
            baseline=float(a["baseline"]),
            depth=int(a["depth"]),
        )
