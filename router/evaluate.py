"""Evaluation of a router's scores on an outcome table (what `frugate router eval` prints)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from router.data import OutcomeTable
from router.metrics import routing_curve
from router.policy import OnlineThreshold, Policy

__all__ = ["CPT_TARGETS", "CurveRow", "EvalReport", "PolicyRow", "evaluate_scores"]

Floats = npt.NDArray[np.float64]
CPT_TARGETS = (0.5, 0.8, 0.95)
TRACK_WARMUP = 256  # scores an OnlineThreshold sees before its first re-estimate


@dataclass(frozen=True)
class CurveRow:
    name: str
    apgr: float
    cpt: tuple[float, ...]  # large-call share needed for each of CPT_TARGETS


@dataclass(frozen=True)
class PolicyRow:
    name: str
    target: str
    threshold: float
    large_share: float
    quality: float
    pgr: float


@dataclass
class EvalReport:
    rows: int
    small_only: float
    large_only: float
    curves: list[CurveRow]
    policies: list[PolicyRow]
    by_source: dict[str, CurveRow] = field(default_factory=dict)


def _curve_row(name: str, scores: Floats, small: Floats, large: Floats) -> CurveRow:
    c = routing_curve(scores, small, large)
    return CurveRow(name, c.apgr(), tuple(c.cpt(t) for t in CPT_TARGETS))


def evaluate_scores(
    table: OutcomeTable, scores: Floats, policies: Mapping[str, Policy] | None = None
) -> EvalReport:
    """Router vs random (constant score: the diagonal) vs oracle (large - small)."""
    small, large = table.small, table.large
    curves = [
        _curve_row("router", scores, small, large),
        _curve_row("random", np.zeros_like(scores), small, large),
        _curve_row("oracle", large - small, small, large),
    ]
    q_small, q_large = float(small.mean()), float(large.mean())
    gap = q_large - q_small

    def policy_row(name: str, target: str, threshold: float, to_large: npt.NDArray[np.bool_],
                   ix: slice | npt.NDArray[np.int64] = slice(None)) -> PolicyRow:
        q = float(np.mean(np.where(to_large, large[ix], small[ix])))
        pgr = (q - q_small) / gap if abs(gap) > 1e-12 else float("nan")
        return PolicyRow(name, target, threshold, float(to_large.mean()), q, pgr)

    rows: list[PolicyRow] = []
    for name, pol in (policies or {}).items():
        target = (
            f"large_share={pol.large_share}"
            if pol.large_share is not None
            else (f"quality={pol.quality}")
        )
        rows.append(policy_row(name, target, pol.threshold, scores >= pol.threshold))
        if pol.large_share is not None and len(scores) > TRACK_WARMUP:
            # The same policy with `track_share` (the gateway's OnlineThreshold), the rows
            # taken as mixed traffic (a fixed shuffle: tables come sorted by source);
            # measured after its first 256 scores.
            order = np.random.default_rng(0).permutation(len(scores))
            online = OnlineThreshold(pol.large_share, pol.threshold)
            thresholds = np.array([online.observe(float(scores[i])) for i in order])
            # A row is decided with the threshold in force before its own score was seen.
            used = np.concatenate([[pol.threshold], thresholds[:-1]])[TRACK_WARMUP:]
            ix = order[TRACK_WARMUP:]
            rows.append(policy_row(f"{name} tracked", target, float(used[-1]),
                                   scores[ix] >= used, ix))
    by_source: dict[str, CurveRow] = {}
    if table.sources and len(set(table.sources)) > 1:
        src = np.asarray(table.sources)
        for s in sorted(set(table.sources)):
            ix = src == s
            if abs(float((large[ix] - small[ix]).sum())) > 1e-9:
                by_source[s] = _curve_row(s, scores[ix], small[ix], large[ix])
    return EvalReport(
        rows=len(table),
        small_only=q_small,
        large_only=q_large,
        curves=curves,
        policies=rows,
        by_source=by_source,
    )
