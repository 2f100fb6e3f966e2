"""RouteLLM's routing metrics, computed exactly on every possible large-call share.

For a score vector, send the top-k prompts (highest score first) to the large model and the rest
to the small one, for every k in 0..n. Prompts with equal scores are an unordered block: the
curve inside a block is the expectation over random tie-breaking (linear interpolation), so a
constant score gives exactly the random router's diagonal.

    quality(k) = (sum(small) + sum over the top k of (large - small)) / n
    PGR(k)     = (quality(k) - quality(0)) / (quality(n) - quality(0))
    APGR       = area under PGR against share k/n on [0, 1] (trapezoids on all n+1 points)
    CPT(x)     = the smallest share k/n with PGR(k) >= x
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["RoutingCurve", "apgr", "cpt", "quality_curve", "routing_curve"]

Floats = npt.NDArray[np.float64]
_EPS = 1e-12


@dataclass(frozen=True)
class RoutingCurve:
    """Quality and PGR at every large-call share k/n, k = 0..n."""

    share: Floats
    quality: Floats
    pgr: Floats

    @property
    def small_only(self) -> float:
        return float(self.quality[0])

    @property
    def large_only(self) -> float:
        return float(self.quality[-1])

    def apgr(self) -> float:
        return float(np.trapezoid(self.pgr, self.share))

    def cpt(self, target: float) -> float:
        """Smallest share whose PGR reaches `target` (a fraction, e.g. 0.5 for CPT(50%))."""
        hit = np.flatnonzero(self.pgr >= target - 1e-9)
        return float(self.share[hit[0]]) if hit.size else 1.0


def quality_curve(scores: npt.ArrayLike, small: npt.ArrayLike, large: npt.ArrayLike) -> Floats:
    """Mean quality when the top-k scores go to large, for k = 0..n (ties averaged)."""
    s = np.asarray(scores, dtype=np.float64)
    q_small = np.asarray(small, dtype=np.float64)
    q_large = np.asarray(large, dtype=np.float64)
    n = s.size
    if n == 0 or q_small.shape != s.shape or q_large.shape != s.shape:
        raise ValueError("scores, small and large must be non-empty and the same length")
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    gain = (q_large - q_small)[order]
    # Replace each gain by its tie block's mean: the expected gain under random tie-breaking.
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    block_sum = np.add.reduceat(gain, starts)
    block_len = np.diff(np.r_[starts, n])
    gain = np.repeat(block_sum / block_len, block_len)
    return np.asarray((q_small.sum() + np.r_[0.0, np.cumsum(gain)]) / n)


def routing_curve(
    scores: npt.ArrayLike, small: npt.ArrayLike, large: npt.ArrayLike
) -> RoutingCurve:
    quality = quality_curve(scores, small, large)
    gap = quality[-1] - quality[0]
    if abs(gap) < _EPS:
        raise ValueError("the large model is no better than the small one here; PGR is undefined")
    n = quality.size - 1
    pgr = (quality - quality[0]) / gap
    return RoutingCurve(share=np.arange(n + 1) / n, quality=quality, pgr=pgr)


def apgr(scores: npt.ArrayLike, small: npt.ArrayLike, large: npt.ArrayLike) -> float:
    """Average performance gap recovered (random = 0.5; the oracle can exceed 1)."""
    return routing_curve(scores, small, large).apgr()


def cpt(scores: npt.ArrayLike, small: npt.ArrayLike, large: npt.ArrayLike, target: float) -> float:
    """Call-performance threshold: the large-call share needed to recover `target` of the gap."""
    return routing_curve(scores, small, large).cpt(target)
