from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from cache.features import FEATURE_NAMES, pair_features
from cache.train import _flatten, calibrate_thresholds, upper_bound
from cache.verify import Verifier


def test_flattened_trees_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((600, len(FEATURE_NAMES))).astype(np.float32)
    y = x[:, 0] + 0.3 * x[:, 1] - 0.5 * x[:, 9] + 0.1 * rng.standard_normal(600) > 0.5
    model = HistGradientBoostingClassifier(max_iter=30, max_depth=4).fit(x, y.astype(int))
    flat = _flatten(model)
    ours = 1 / (1 + np.exp(-flat.log_odds(x)))
    assert np.abs(ours - model.predict_proba(x)[:, 1]).max() < 1e-6


def test_features_flag_what_changes_the_answer() -> None:
    same = pair_features("How do I lose weight fast?", "How can I lose weight quickly?", 0.9)
    num = pair_features("Is 5 a prime number?", "Is 9 a prime number?", 0.95)
    neg = pair_features("Is coffee good for you?", "Is coffee not good for you?", 0.95)
    ent = pair_features("What is the capital of France?", "What is the capital of Spain?", 0.9)
    swap = pair_features("How to convert ethene to ethane?", "How to convert ethane to ethene?", 1)
    i = FEATURE_NAMES.index
    assert num[i("number_mismatch")] == 1 and same[i("number_mismatch")] == 0
    assert neg[i("negation_mismatch")] == 1 and same[i("negation_mismatch")] == 0
    assert ent[i("entity_mismatch")] > 0 and same[i("entity_mismatch")] == 0
    assert swap[i("order_swap")] > 0 and same[i("order_swap")] == 0


def test_bundled_verifier_is_calibrated_and_rejects_near_misses() -> None:
    v = Verifier.load()
    assert list(v.deltas) == sorted(v.deltas)
    assert all(np.diff(v.thresholds) <= 1e-12)  # a larger budget never needs a higher bar
    assert v.threshold(0.0001) == 1.0  # below the calibrated range: no semantic hits
    good = v.score("How do I reset my password?", "How can I reset my password?", 0.97)
    for near_miss in (
        ("How do I reset my password?", "How do I reset my router password?", 0.9),
        ("Is 5 a prime number?", "Is 9 a prime number?", 0.93),
    ):
        assert v.score(*near_miss) < good


def test_upper_bound_and_threshold_choice() -> None:
    assert upper_bound(0, 1000) < 0.005 and upper_bound(10, 100) > 0.1
    scores = [0.99] * 300 + [0.8] * 100 + [0.5] * 100
    correct = [True] * 300 + [True] * 95 + [False] * 5 + [False] * 100
    thr = calibrate_thresholds(scores, correct, deltas=[0.02, 0.05, 0.5])
    assert thr[0] == 0.99  # 0.8 would add 5 errors: over 2%
    assert thr[1] == 0.8
    assert thr[2] == 0.5
