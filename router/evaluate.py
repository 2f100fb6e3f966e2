"""Evaluation of a router's scores on an outcome table (what `frugate router eval` prints)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from router.data import OutcomeTable
from router.metrics import routing_curve
from router.policy import Policy

__all__ = ["CPT_TARGETS", "CurveRow", "EvalReport", "PolicyRow", "evaluate_scores"]

Floats = npt.NDArray[np.float64]
CPT_TARGETS = (0.5, 0.8, 0.95)


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
    rows: list[PolicyRow] = []
    for name, pol in (policies or {}).items():
        to_large = scores >= pol.threshold
        q = float(np.mean(np.where(to_large, large, small)))
        target = (
            f"large_share={pol.large_share}"
            if pol.large_share is not None
            else (f"quality={pol.quality}")
        )
        gap = q_large - q_small
        rows.append(
            PolicyRow(
                name=name,
                target=target,
                threshold=pol.threshold,
                large_share=float(to_large.mean()),
                quality=q,
                pgr=(q - q_small) / gap if abs(gap) > 1e-12 else float("nan"),
            )
        )
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
