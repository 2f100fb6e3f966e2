"""Cascade (answer with small, escalate to large when a cheap check fails) vs routing.

We have no per-answer log-probabilities for these tables, so the check is simulated: a check of
a given AUC at telling the small model's wrong answers from its right ones (binormal model:
check score ~ N(d, 1) on wrong answers, N(0, 1) on right ones, AUC = Phi(d / sqrt 2)).
A real check (e.g. mean token logprob from vLLM) must be measured to know its AUC; this shows
what AUC it needs before the cascade beats the router at the same cost.

Costs per request, small call = 1, large call = r:
    routing at large share x: (1 - x) + x r        cascade escalating y: 1 + y r
(the cascade always pays for the small answer, and escalated requests pay both latencies).

    python benchmarks/router_cascade.py [--ratio 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import NormalDist

import numpy as np

import router
from router.metrics import quality_curve

DATA = [
    Path("/work/shared/data/routing/mmlu.csv"),
    Path("/work/shared/data/routing/routerbench_train.csv"),
]


def _router_scores(r: router.Router, table: router.OutcomeTable) -> np.ndarray:
    from embedder import MiniLMEmbedder
    from router.embeddings import embed_prompts

    emb = embed_prompts(table.prompts, MiniLMEmbedder, cache_dir=Path(".cache/router"))
    return r.score_many(table.prompts, emb)


def _quality_at_cost(curve: np.ndarray, cost_per_share: np.ndarray, budget: float) -> float:
    """Best quality whose cost fits the budget (curves are indexed by share k/n)."""
    ok = np.flatnonzero(cost_per_share <= budget + 1e-12)
    return float(curve[ok].max()) if ok.size else float("nan")


def row(name: str, curve: np.ndarray, cost: np.ndarray, share: np.ndarray) -> None:
    """APGR of a quality curve, and its best quality at three cost budgets."""
    pgr = (curve - curve[0]) / (curve[-1] - curve[0])
    a = float(np.trapezoid(pgr, share))
    qs = "".join(f"{_quality_at_cost(curve, cost, b):>14.4f}" for b in (2.0, 3.0, 5.0))
    print(f"{name:<18}{a:>8.4f}{qs}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ratio", type=float, default=10.0, help="large/small cost per request")
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    r = router.load_default()
    for path in DATA:
        if not path.exists():
            continue
        full = router.read_outcomes(path)
        t = full.take(np.flatnonzero(~r.was_seen(full.prompts)))
        n = len(t)
        share = np.arange(n + 1) / n
        routed = quality_curve(_router_scores(r, t), t.small, t.large)
        q0, q1 = routed[0], routed[-1]
        route_cost = (1 - share) + share * args.ratio
        casc_cost = 1 + share * args.ratio
        print(
            f"\n{path.name} held-out rows {n}: small {q0:.4f}, large {q1:.4f}, "
            f"cost ratio {args.ratio:g}"
        )
        print(
            f"{'':<18}{'APGR':>8}"
            + "".join(f"{'q@cost(' + str(b) + ')':>14}" for b in (2.0, 3.0, 5.0))
        )

        row("router", routed, route_cost, share)
        wrong = t.small < 0.5
        for auc in (0.6, 0.7, 0.8, 0.9, 1.0):
            if auc == 1.0:
                curves = [quality_curve(wrong.astype(float), t.small, t.large)]
            else:
                d = np.sqrt(2) * NormalDist().inv_cdf(auc)
                curves = []
                for seed in range(args.seeds):
                    rng = np.random.default_rng(seed)
                    check = rng.normal(size=n) + d * wrong
                    curves.append(quality_curve(check, t.small, t.large))
            row(f"cascade AUC {auc:.1f}", np.mean(curves, axis=0), casc_cost, share)


if __name__ == "__main__":
    main()
