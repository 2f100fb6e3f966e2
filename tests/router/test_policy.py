from __future__ import annotations

import math

import numpy as np
import pytest

from router.policy import Calibration, Policy, policies_from_config


def _calibration(n: int = 1000, seed: int = 0) -> Calibration:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=n)
    small = (rng.random(n) > 0.3 + 0.2 * (scores > 0)).astype(float)
    large = np.maximum(small, (rng.random(n) > 0.2).astype(float))
    return Calibration(scores=scores, small=small, large=large)


@pytest.mark.parametrize("share", [0.0, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0])
def test_large_share_target_is_hit_on_calibration_data(share: float) -> None:
    cal = _calibration()
    pol = Policy("auto", "small", "large", large_share=share, calibration=cal)
    assert abs(cal.large_share_at(pol.threshold) - share) <= 0.03


def test_large_share_with_heavy_ties_stays_close() -> None:
    # scores from a kNN mean take few distinct values; the threshold falls between them
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 200, 2000) / 200
    cal = Calibration(scores, np.zeros(2000), np.ones(2000))
    for share in (0.1, 0.3, 0.5):
        t = cal.threshold_for_share(share)
        assert abs(cal.large_share_at(t) - share) <= 0.03


def test_quality_target_is_the_cheapest_threshold_reaching_it() -> None:
    cal = _calibration()
    q_large = float(cal.large.mean())
    pol = Policy("auto-quality", "small", "large", quality=0.95, calibration=cal)
    assert cal.quality_at(pol.threshold) >= 0.95 * q_large - 1e-12
    # one fewer large call would miss the target
    desc = np.sort(cal.scores)[::-1]
    k = round(cal.large_share_at(pol.threshold) * desc.size)
    assert k > 0
    cheaper = (desc[k - 1] + desc[k - 2]) / 2 if k > 1 else math.inf
    assert cal.quality_at(cheaper) < 0.95 * q_large


def test_quality_already_met_by_small_sends_nothing_to_large() -> None:
    cal = Calibration(np.arange(10.0), np.ones(10), np.ones(10) * 0.5 + 0.5)
    pol = Policy("p", "s", "l", quality=0.9, calibration=cal)
    assert cal.large_share_at(pol.threshold) == 0.0


def test_policy_needs_exactly_one_knob_and_some_calibration() -> None:
    cal = _calibration()
    with pytest.raises(ValueError, match="exactly one"):
        Policy("p", "s", "l", calibration=cal)
    with pytest.raises(ValueError, match="exactly one"):
        Policy("p", "s", "l", large_share=0.3, quality=0.9, calibration=cal)
    with pytest.raises(ValueError, match="calibration"):
        Policy("p", "s", "l", large_share=0.3)
    assert Policy("p", "s", "l", large_share=0.3, threshold=0.25).threshold == 0.25


def _policy(**kw: object) -> Policy:
    base: dict[str, object] = {"large_share": 0.3, "threshold": 0.0}
    base.update(kw)
    return Policy("auto", "small-pool", "large-pool", **base)  # type: ignore[arg-type]


def test_score_against_threshold() -> None:
    pol = _policy()
    d = pol.decide(0.5)
    assert (d.pool, d.tier, d.reason) == ("large-pool", "large", "score_above_threshold")
    assert (d.score, d.threshold) == (0.5, 0.0)
    d = pol.decide(-0.5)
    assert (d.pool, d.reason) == ("small-pool", "score_below_threshold")


def test_context_overflow_goes_large() -> None:
    pol = _policy()
    d = pol.decide(-1.0, prompt_tokens=7000, max_tokens=2000, small_ctx=8192)
    assert (d.pool, d.reason) == ("large-pool", "small_context_exceeded")
    assert pol.decide(-1.0, prompt_tokens=6000, max_tokens=2000, small_ctx=8192).tier == "small"


def test_unhealthy_pools_switch_when_allowed() -> None:
    pol = _policy(allow_degrade=True)
    d = pol.decide(-1.0, small_healthy=False)
    assert (d.tier, d.reason) == ("large", "small_unavailable")
    d = pol.decide(1.0, large_healthy=False)
    assert (d.tier, d.reason) == ("small", "large_unavailable_degraded")
    # both down: keep the scored choice, the gateway reports the outage
    assert pol.decide(1.0, large_healthy=False, small_healthy=False).tier == "large"


def test_no_degrade_keeps_large() -> None:
    pol = _policy(allow_degrade=False)
    assert pol.decide(1.0, large_healthy=False).tier == "large"


def test_degrade_never_overflows_the_small_context() -> None:
    pol = _policy(allow_degrade=True)
    d = pol.decide(1.0, large_healthy=False, prompt_tokens=9000, small_ctx=8192)
    assert d.tier == "large"


def test_near_budget_prefers_small_only_when_configured() -> None:
    assert _policy(prefer_small_near_budget=False).decide(1.0, near_budget=True).tier == "large"
    d = _policy(prefer_small_near_budget=True).decide(1.0, near_budget=True)
    assert (d.tier, d.reason) == ("small", "near_budget")
    # the small pool cannot take it: context wins over budget
    d = _policy(prefer_small_near_budget=True).decide(
        1.0, near_budget=True, prompt_tokens=9000, small_ctx=8192
    )
    assert d.tier == "large"


def test_policies_from_config() -> None:
    cal = _calibration()
    pols = policies_from_config(
        {
            "auto": {"small_pool": "s", "large_pool": "l", "large_share": 0.3},
            "auto-quality": {"quality": 0.95, "allow_degrade": False},
            "fixed": {"large_share": 0.5, "threshold": 1.5},
        },
        cal,
    )
    assert abs(cal.large_share_at(pols["auto"].threshold) - 0.3) <= 0.03
    assert pols["auto-quality"].small_pool == "small"
    assert pols["auto-quality"].allow_degrade is False
    assert pols["fixed"].threshold == 1.5
    with pytest.raises(ValueError, match="unknown"):
        policies_from_config({"x": {"large_shar": 0.3}}, cal)


def test_online_threshold_follows_shifted_traffic() -> None:
    from router.policy import OnlineThreshold

    cal = _calibration()
    start = cal.threshold_for_share(0.3)
    online = OnlineThreshold(0.3, start, window=1000, every=50)
    rng = np.random.default_rng(5)
    live = rng.normal(loc=2.0, size=3000)  # traffic scores shifted far above calibration
    assert np.mean(live >= start) > 0.8  # the static threshold would send most calls large
    sent = [s >= online.observe(s) for s in live]
    assert abs(np.mean(sent[1500:]) - 0.3) <= 0.03
