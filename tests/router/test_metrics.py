from __future__ import annotations

import numpy as np
import pytest

from router.metrics import apgr, cpt, routing_curve

# Four prompts; large - small gains are [+1, +1, 0, -1], so the whole gap is 1 prompt.
SMALL = [0, 0, 1, 1]
LARGE = [1, 1, 1, 0]


def test_perfect_order_by_hand() -> None:
    c = routing_curve([3, 2, 1, 0], SMALL, LARGE)
    np.testing.assert_allclose(c.quality, [0.5, 0.75, 1.0, 1.0, 0.75])
    np.testing.assert_allclose(c.pgr, [0, 1, 2, 2, 1])
    # trapezoids of width 1/4: (0+1)/2 + (1+2)/2 + (2+2)/2 + (2+1)/2 = 5.5
    assert c.apgr() == pytest.approx(5.5 / 4)
    assert c.small_only == 0.5
    assert c.large_only == 0.75
    assert c.cpt(0.5) == 0.25
    assert c.cpt(0.95) == 0.25


def test_reversed_order_by_hand() -> None:
    # order: -1, 0, +1, +1 -> cumulative gain 0, -1, -1, 0, 1
    scores = [0, 1, 2, 3]
    assert apgr(scores, SMALL, LARGE) == pytest.approx((-0.5 - 1 - 0.5 + 0.5) / 4)
    assert cpt(scores, SMALL, LARGE, 0.5) == 1.0


def test_constant_score_is_the_random_diagonal() -> None:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 2, 50)
    large = np.maximum(small, rng.integers(0, 2, 50))
    c = routing_curve(np.zeros(50), small, large)
    assert c.apgr() == pytest.approx(0.5)
    np.testing.assert_allclose(c.pgr, np.linspace(0, 1, 51))
    assert c.cpt(0.8) == pytest.approx(0.8)


def test_ties_are_averaged() -> None:
    # two tie blocks: {gain +1, -1} then {gain +1, 0}: block means 0 and 0.5
    c = routing_curve([1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0])
    np.testing.assert_allclose(c.pgr, [0, 0, 0, 0.5, 1])
    assert c.apgr() == pytest.approx((0 + 0 + 0.25 + 0.75) / 4)


def test_undefined_without_a_gap() -> None:
    with pytest.raises(ValueError, match="no better"):
        apgr([1, 2], [1, 0], [1, 0])
    with pytest.raises(ValueError):
        apgr([], [], [])
