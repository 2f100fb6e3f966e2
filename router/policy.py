"""Routing policies: a score threshold calibrated to a target, plus the request-time overrides.

A policy alias such as `auto` names a small pool, a large pool and one knob:

- `large_share: 0.3` — send about 30% of calls to the large pool;
- `quality: 0.95`   — keep 95% of the large model's mean quality, as cheaply as possible.

Either knob becomes a score threshold on calibration data (the shipped router's scores on a fold
it was not trained on, with both models' qualities). A request whose score is at or above the
threshold goes to the large pool, then the overrides in `Policy.decide` apply in this order:
near budget -> small (if configured); context overflow of the small pool -> large; the chosen
pool unhealthy or saturated -> the other one (to small only when `allow_degrade`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from router.metrics import quality_curve

__all__ = [
    "DEFAULT_POLICIES",
    "Calibration",
    "Decision",
    "OnlineThreshold",
    "Policy",
    "policies_from_config",
]

Floats = npt.NDArray[np.float64]
Tier = Literal["small", "large"]


@dataclass(frozen=True)
class Calibration:
    """Router scores on held-aside prompts with both models' qualities on them."""

    scores: Floats
    small: Floats
    large: Floats

    def __post_init__(self) -> None:
        n = self.scores.shape[0]
        if n == 0 or self.small.shape != (n,) or self.large.shape != (n,):
            raise ValueError("calibration needs one small and one large quality per score")

    def _threshold_at(self, k: int) -> float:
        """A threshold that sends exactly the top-k scores to large (ties permitting)."""
        desc = np.sort(self.scores)[::-1]
        if k <= 0:
            return math.inf
        if k >= desc.size:
            return -math.inf
        return float((desc[k - 1] + desc[k]) / 2)

    def threshold_for_share(self, large_share: float) -> float:
        if not 0.0 <= large_share <= 1.0:
            raise ValueError("large_share must be within [0, 1]")
        return self._threshold_at(round(large_share * self.scores.size))

    def threshold_for_quality(self, quality: float) -> float:
        """The cheapest threshold whose mean quality reaches `quality` x the large-only quality."""
        if not 0.0 <= quality <= 1.0:
            raise ValueError("quality must be within [0, 1]")
        curve = quality_curve(self.scores, self.small, self.large)
        target = quality * curve[-1]
        reached = np.flatnonzero(curve >= target - 1e-12)
        k = int(reached[0]) if reached.size else self.scores.size
        return self._threshold_at(k)

    def large_share_at(self, threshold: float) -> float:
        return float(np.mean(self.scores >= threshold))

    def quality_at(self, threshold: float) -> float:
        to_large = self.scores >= threshold
        return float(np.mean(np.where(to_large, self.large, self.small)))


@dataclass(frozen=True)
class Decision:
    """Where one request goes and why."""

    pool: str
    tier: Tier
    reason: str
    score: float
    threshold: float


@dataclass(frozen=True)
class Policy:
    """A routing alias: two pools, one calibrated knob, and the override rules.

    Give exactly one of `large_share` or `quality`, and either `calibration` (usually the
    shipped router's, `Router.calibration`) or an explicit `threshold`.
    """

    name: str
    small_pool: str
    large_pool: str
    large_share: float | None = None
    quality: float | None = None
    allow_degrade: bool = True
    prefer_small_near_budget: bool = False
    calibration: Calibration | None = field(default=None, repr=False, compare=False)
    threshold: float = math.nan

    def __post_init__(self) -> None:
        if (self.large_share is None) == (self.quality is None):
            raise ValueError(f"policy {self.name!r}: give exactly one of large_share or quality")
        if not math.isnan(self.threshold):
            return
        if self.calibration is None:
            raise ValueError(f"policy {self.name!r}: needs calibration data or a threshold")
        if self.large_share is not None:
            threshold = self.calibration.threshold_for_share(self.large_share)
        else:
            assert self.quality is not None
            threshold = self.calibration.threshold_for_quality(self.quality)
        object.__setattr__(self, "threshold", threshold)

    def decide(
        self,
        score: float,
        *,
        prompt_tokens: int = 0,
        max_tokens: int = 0,
        small_ctx: int | None = None,
        small_healthy: bool = True,
        large_healthy: bool = True,
        near_budget: bool = False,
        threshold: float | None = None,
    ) -> Decision:
        """Pick a pool for one request. `*_healthy=False` also covers a saturated pool;
        `threshold` replaces the calibrated one (e.g. an `OnlineThreshold`'s)."""
        if threshold is None:
            threshold = self.threshold
        tier: Tier = "large" if score >= threshold else "small"
        reason = "score_above_threshold" if tier == "large" else "score_below_threshold"
        if near_budget and self.prefer_small_near_budget and tier == "large":
            tier, reason = "small", "near_budget"
        overflow = small_ctx is not None and prompt_tokens + max_tokens > small_ctx
        if overflow:
            tier, reason = "large", "small_context_exceeded"
        if tier == "small" and not small_healthy and large_healthy:
            tier, reason = "large", "small_unavailable"
        elif (
            tier == "large"
            and not large_healthy
            and small_healthy
            and self.allow_degrade
            and not overflow
        ):
            tier, reason = "small", "large_unavailable_degraded"
        pool = self.large_pool if tier == "large" else self.small_pool
        return Decision(pool=pool, tier=tier, reason=reason, score=score, threshold=threshold)


DEFAULT_POLICIES: dict[str, dict[str, Any]] = {
    "auto": {"small_pool": "small", "large_pool": "large", "large_share": 0.3},
    "auto-cheap": {"small_pool": "small", "large_pool": "large", "large_share": 0.1},
    "auto-quality": {"small_pool": "small", "large_pool": "large", "quality": 0.95},
}

_POLICY_KEYS = {
    "small_pool",
    "large_pool",
    "large_share",
    "quality",
    "allow_degrade",
    "prefer_small_near_budget",
    "threshold",
}


def policies_from_config(
    specs: Mapping[str, Mapping[str, Any]], calibration: Calibration
) -> dict[str, Policy]:
    """Build policies from config, e.g. `{"auto": {"small_pool": "small", "large_pool":
    "large", "large_share": 0.3}}`; `threshold` may be given to skip calibration."""
    out: dict[str, Policy] = {}
    for name, spec in specs.items():
        unknown = set(spec) - _POLICY_KEYS
        if unknown:
            raise ValueError(f"policy {name!r}: unknown key(s) {sorted(unknown)}")
        out[name] = Policy(
            name,
            str(spec.get("small_pool", "small")),
            str(spec.get("large_pool", "large")),
            large_share=spec.get("large_share"),
            quality=spec.get("quality"),
            allow_degrade=bool(spec.get("allow_degrade", True)),
            prefer_small_near_budget=bool(spec.get("prefer_small_near_budget", False)),
            calibration=calibration,
            threshold=float(spec.get("threshold", math.nan)),
        )
    return out


class OnlineThreshold:
    """Keeps a `large_share` target on live traffic, whose scores may not look like the
    calibration data: the threshold is the (1 - share) quantile of the last `window` scores,
    refreshed every `every` observations (starting from the calibrated threshold).

    Owned by the caller (e.g. one per policy in the gateway's state); not thread-safe.
    """

    def __init__(
        self, large_share: float, initial: float, *, window: int = 2000, every: int = 64
    ) -> None:
        if not 0.0 <= large_share <= 1.0:
            raise ValueError("large_share must be within [0, 1]")
        self.large_share = large_share
        self.threshold = initial
        self._buf = np.empty(window)
        self._n = 0
        self._every = every

    def observe(self, score: float) -> float:
        """Record one request's score; returns the threshold to use for the next one."""
        self._buf[self._n % self._buf.size] = score
        self._n += 1
        if self._n % self._every == 0 and self._n >= min(self._buf.size, 256):
            recent = self._buf[: min(self._n, self._buf.size)]
            cal = Calibration(recent, np.zeros(recent.size), np.zeros(recent.size))
            self.threshold = cal.threshold_for_share(self.large_share)
        return self.threshold
