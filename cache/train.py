"""Rebuild the verifier artifact (`cache/verifier.npz`) from labelled pairs.

    frugate cache train --pairs ../shared/data/cache/qqp_pairs.jsonl

1. Split pairs train/calib/dev by component (cache/data.py); dev is never touched here.
2. Training examples from the train split: every labelled pair, plus the nearest
   cached neighbours each question meets among all train entries (the candidates a
   real cache shows the verifier), labelled duplicate only when they are the same
   text or linked by duplicate labels.
3. Fit gradient-boosted trees (monotone in the overlap/mismatch features, so odd
   traffic cannot push the score the wrong way) and flatten them to arrays.
4. Calibrate: run the calib split exactly like `frugate cache eval` (all entries in one
   cache, nearest neighbour, verifier) and, for each δ, take the lowest score threshold
   whose 95% upper confidence bound on the false-hit rate of SEMANTIC hits is at most δ
   (exact hits are always right; counting them would make δ depend on how often the
   calibration traffic repeats itself verbatim). Where no threshold qualifies, the
   threshold is 1.0: that δ allows no semantic hits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cache.data import Pair, duplicate_clusters, same_question, split_pairs
from cache.evaluate import pair_report, simulate
from cache.features import FEATURE_NAMES, pair_features_many
from cache.verify import TreeEnsemble, Verifier
from embedder.base import Vectors

__all__ = ["DELTAS", "calibrate_thresholds", "fit_trees", "train_verifier", "upper_bound"]

DELTAS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
# +1: more of it means "more alike"; -1: more of it means "different"; 0: free.
MONOTONE = {
    "cosine": 1,
    "token_jaccard": 1,
    "content_jaccard": 1,
    "char3_dice": 1,
    "seq_ratio": 1,
    "len_ratio": 0,
    "token_diff": 0,
    "unmatched_min": -1,
    "unmatched_max": -1,
    "number_mismatch": -1,
    "number_count": -1,
    "negation_mismatch": -1,
    "entity_mismatch": -1,
    "entity_count": -1,
    "qword_mismatch": -1,
    "first_word_same": 0,
    "last_word_same": 0,
    "order_swap": -1,
}


def upper_bound(errors: int, n: int, z: float = 1.645) -> float:
    """One-sided 95% Wilson upper bound of an error rate observed as errors/n."""
    if n == 0:
        return 1.0
    p = errors / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + margin) / denom)


def _nearest(
    queries: Vectors, entries: Vectors, k: int, chunk: int = 4096
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    sims, idx = [], []
    for start in range(0, len(queries), chunk):
        s = queries[start : start + chunk] @ entries.T
        top = np.argpartition(-s, kth=min(k, s.shape[1] - 1), axis=1)[:, :k]
        ts = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-ts, axis=1)
        idx.append(np.take_along_axis(top, order, axis=1))
        sims.append(np.take_along_axis(ts, order, axis=1))
    return np.concatenate(sims), np.concatenate(idx)


def training_examples(
    pairs: Sequence[Pair], vec_a: Vectors, vec_b: Vectors, mined_k: int = 3
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
    clusters = duplicate_clusters(pairs)
    qs: list[str] = []
    cs: list[str] = []
    cos: list[float] = []
    ys: list[int] = []
    for p, va, vb in zip(pairs, vec_a, vec_b, strict=True):
        qs.append(p.b)
        cs.append(p.a)
        cos.append(float(va @ vb))
        ys.append(p.duplicate)
    # Mined neighbours: what the cache would actually put in front of the verifier.
    entry_text: dict[str, int] = {}
    for i, p in enumerate(pairs):
        entry_text.setdefault(p.a, i)
    rows = list(entry_text.values())
    ents = vec_a[rows]
    sims, idx = _nearest(vec_b, ents, mined_k)
    for i, p in enumerate(pairs):
        for s, j in zip(sims[i].tolist(), idx[i].tolist(), strict=True):
            other = pairs[rows[j]].a
            if other == p.a or other == p.b:
                continue  # already covered by the labelled pair / exact hit
            qs.append(p.b)
            cs.append(other)
            cos.append(s)
            ys.append(int(same_question(p.b, other, clusters)))
    x = pair_features_many(qs, cs, cos)
    return x, np.asarray(ys, dtype=np.int8)


def fit_trees(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int8], seed: int = 0, **params: Any
) -> TreeEnsemble:
    from sklearn.ensemble import HistGradientBoostingClassifier

    settings: dict[str, Any] = {
        "max_iter": 300,
        "learning_rate": 0.08,
        "max_depth": 5,
        "min_samples_leaf": 40,
        "l2_regularization": 1.0,
        "early_stopping": False,
        "monotonic_cst": [MONOTONE[n] for n in FEATURE_NAMES],
        "random_state": seed,
    }
    settings.update(params)
    model = HistGradientBoostingClassifier(**settings).fit(x, y)
    return _flatten(model)


def _flatten(model: Any) -> TreeEnsemble:
    feature, threshold, left, right, value, is_leaf, roots = [], [], [], [], [], [], []
    depth = 0
    offset = 0
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        roots.append(offset)
        feature.append(nodes["feature_idx"].astype(np.int32))
        threshold.append(nodes["num_threshold"].astype(np.float64))
        left.append(nodes["left"].astype(np.int32) + offset)
        right.append(nodes["right"].astype(np.int32) + offset)
        value.append(np.where(nodes["is_leaf"], nodes["value"], 0.0).astype(np.float64))
        is_leaf.append(nodes["is_leaf"].astype(bool))
        depth = max(depth, int(nodes["depth"].max()))
        offset += len(nodes)
    baseline = float(np.ravel(model._baseline_prediction)[0])
    return TreeEnsemble(
        feature=np.concatenate(feature),
        threshold=np.concatenate(threshold),
        left=np.concatenate(left),
        right=np.concatenate(right),
        value=np.concatenate(value),
        is_leaf=np.concatenate(is_leaf),
        roots=np.asarray(roots, dtype=np.int32),
        depth=depth + 1,
        baseline=baseline,
    )


def calibrate_thresholds(
    scores: Sequence[float], correct: Sequence[bool], deltas: Sequence[float] = DELTAS
) -> npt.NDArray[np.float64]:
    """Per δ, the lowest threshold whose accepted set has upper-bounded error <= δ."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    s = np.asarray(scores, dtype=np.float64)[order]
    wrong = np.cumsum(~np.asarray(correct, dtype=bool)[order])
    out = []
    for delta in deltas:
        best = 1.0
        for n in range(1, len(s) + 1):
            if n < len(s) and s[n] == s[n - 1]:
                continue  # a threshold accepts all ties together
            if s[n - 1] <= 0:
                break
            if upper_bound(int(wrong[n - 1]), n) <= delta:
                best = float(s[n - 1])
        out.append(best)
    return np.asarray(out, dtype=np.float64)


def eval_split(
    pairs: Sequence[Pair], vec_a: Vectors, vec_b: Vectors, verifier: Verifier, delta: float
) -> tuple[list[float], list[bool], dict[str, float]]:
    """Run a split like `frugate cache eval`; return scores and correctness of the semantic
    hits, and the overall figures."""
    entries = [(f"e{i}", p.a) for i, p in enumerate(pairs)]
    queries = [(f"q{i}", p.b) for i, p in enumerate(pairs)]
    results = simulate(entries, vec_a, queries, vec_b, verifier, delta)
    report = pair_report(pairs, [r.hit_id for r in results])
    clusters = duplicate_clusters(pairs)
    scores, correct = [], []
    for i, r in enumerate(results):
        if r.kind == "semantic" and r.hit_id is not None:  # exact hits need no calibration
            scores.append(r.score)
            correct.append(same_question(pairs[i].b, pairs[int(r.hit_id[1:])].a, clusters))
    figures = {"precision": report.precision, "recall": report.recall, "hit_rate": report.hit_rate}
    return scores, correct, figures


def train_verifier(
    pairs: list[Pair],
    embed: Any,
    out: Path,
    min_cosine: float = 0.7,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit + calibrate + save; `embed(texts) -> vectors`. Returns figures for the log."""
    splits = split_pairs(pairs)
    train, calib = splits["train"], splits["calib"]
    ta, tb = embed([p.a for p in train]), embed([p.b for p in train])
    x, y = training_examples(train, ta, tb)
    model = fit_trees(x, y, seed=seed)
    # Score every calib candidate with a permissive verifier, then pick thresholds.
    open_verifier = Verifier(model, np.array([1.0]), np.array([0.0]), min_cosine)
    ca, cb = embed([p.a for p in calib]), embed([p.b for p in calib])
    scores, correct, _ = eval_split(calib, ca, cb, open_verifier, delta=1.0)
    thresholds = calibrate_thresholds(scores, correct)
    info = {
        "train_pairs": float(len(train)),
        "train_examples": float(len(y)),
        "calib_pairs": float(len(calib)),
        "calib_candidates": float(len(scores)),
    }
    verifier = Verifier(model, np.asarray(DELTAS), thresholds, min_cosine, info)
    verifier.save(out)
    per_delta = {}
    s = np.asarray(scores)
    ok = np.asarray(correct, dtype=bool)
    for delta, thr in zip(DELTAS, thresholds.tolist(), strict=True):
        accepted = s >= thr
        per_delta[str(delta)] = {
            "threshold": thr,
            "semantic_hits": int(accepted.sum()),
            "semantic_precision": float(ok[accepted].mean()) if accepted.any() else None,
        }
    return {**info, "calibration": per_delta}
