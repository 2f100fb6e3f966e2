"""`frugate router eval`'s policy rows: a fixed threshold vs the same policy tracking its share."""

from __future__ import annotations

import numpy as np

from router.data import OutcomeTable
from router.evaluate import TRACK_WARMUP, evaluate_scores
from router.policy import Policy


def test_a_tracked_policy_holds_its_share_where_the_fixed_threshold_does_not() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    scores = rng.normal(0.8, 0.2, n)  # traffic that scores far above the calibration data
    small = (rng.random(n) < 0.5).astype(float)
    large = (rng.random(n) < 0.8).astype(float)
    table = OutcomeTable([f"p{i}" for i in range(n)], small, large)
    pol = Policy("auto", "small", "large", large_share=0.3, threshold=0.2)
    rows = {r.name: r for r in evaluate_scores(table, scores, {"auto": pol}).policies}
    assert rows["auto"].large_share > 0.95
    tracked = rows["auto tracked"]
    assert abs(tracked.large_share - 0.3) < 0.03
    assert tracked.threshold > 0.2


def test_no_tracked_row_for_quality_targets_or_tiny_tables() -> None:
    n = TRACK_WARMUP
    table = OutcomeTable([f"p{i}" for i in range(n)], np.zeros(n), np.ones(n))
    pols = {"share": Policy("share", "s", "l", large_share=0.3, threshold=0.5),
            "qual": Policy("qual", "s", "l", quality=0.9, threshold=0.5)}
    names = [r.name for r in evaluate_scores(table, np.linspace(0, 1, n), pols).policies]
    assert names == ["share", "qual"]
