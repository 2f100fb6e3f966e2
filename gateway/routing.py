"""Pipeline stage 7 for routing policies (`model: "auto"` ...): the router picks the pool.

The router scores the request's last user turn (its shared embedding plus cheap text
features); the policy compares the score with its calibrated threshold and applies the
overrides: context overflow -> large, an unhealthy or saturated pool -> the other one (if the
policy allows degrading), a team near its budget -> small (if configured). A `large_share`
policy with `track_share` moves its threshold with the live scores, so the share holds on
traffic that does not look like the calibration data.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric

from gateway.accounting.periods import period_bounds
from gateway.cascade import Check, may_cascade
from gateway.config import RoutingPolicy
from gateway.upstream.pool import Pool
from router import OnlineThreshold, Policy, Router, single_threaded_blas

if TYPE_CHECKING:
    from gateway.pipeline import Job
    from gateway.state import State


class Routing:
    def __init__(self, router: Router, configs: list[RoutingPolicy], state: State) -> None:
        self.router = router
        self.state = state
        single_threaded_blas()  # the kNN gemv must not wait for BLAS threads under load
        self.configs = {c.name: c for c in configs}
        self.policies: dict[str, Policy] = {
            c.name: router.policy(c.name, c.small, c.large, large_share=c.large_share,
                                  quality=c.quality, allow_degrade=c.allow_degrade,
                                  prefer_small_near_budget=c.prefer_small_above_budget is not None)
            for c in configs}
        self.trackers: dict[str, OnlineThreshold] = {
            c.name: OnlineThreshold(c.large_share, self.policies[c.name].threshold,
                                    window=c.track_window)
            for c in configs if c.track_share and c.large_share is not None}
        state.metrics.add_collector(self._thresholds)

    def threshold(self, name: str) -> float:
        """The threshold `name` applies now (its tracker's, if it tracks its share)."""
        tracker = self.trackers.get(name)
        return tracker.threshold if tracker is not None else self.policies[name].threshold

    async def decide(self, job: Job, vector: Any) -> Pool:
        cfg = job.target.policy
        assert cfg is not None
        policy = self.policies[cfg.name]
        pools = self.state.pools
        small, large = pools[cfg.small], pools[cfg.large]
        score = self.router.score(job.query_text, vector)
        near = await self._near_budget(job, cfg) if cfg.prefer_small_above_budget else False
        d = policy.decide(score, prompt_tokens=job.prompt_tokens,
                          max_tokens=job.req.output_limit() or 0,  # type: ignore[attr-defined]
                          small_ctx=small.config.max_context,
                          small_healthy=small.healthy and not small.saturated(),
                          large_healthy=large.healthy and not large.saturated(),
                          near_budget=near, threshold=self.threshold(cfg.name))
        if (tracker := self.trackers.get(cfg.name)) is not None:
            tracker.observe(float(score))
        rec = job.record
        rec.route_decision = f"{cfg.name}:{d.tier}:{d.reason}"
        rec.route_score = round(float(score), 6)
        if d.reason == "score_below_threshold" and may_cascade(job):
            assert cfg.cascade_min_logprob is not None
            job.cascade = Check(cfg.cascade_min_logprob, large)  # counted once checked
        else:
            self.state.metrics.routes.labels(cfg.name, d.pool, d.reason).inc()
        return pools[d.pool]

    def _thresholds(self) -> Iterator[Metric]:
        g = GaugeMetricFamily("frugate_route_threshold",
                              "Score at or above which a policy picks its large pool.",
                              labels=["policy", "tracked"])
        for name in self.policies:
            g.add_metric([name, str(name in self.trackers).lower()], self.threshold(name))
        yield g

    async def _near_budget(self, job: Job, cfg: RoutingPolicy) -> bool:
        """Has the caller's team used `prefer_small_above_budget` of its spend budget?"""
        p = job.principal
        rule = self.state.directory.budgets.get(("team", p.team_id))
        if rule is None or not rule.limit_micros:
            return False
        tag, _ = period_bounds(rule.period, datetime.now(UTC))
        spent, held, _ = await self.state.admission.usage("team", p.team_id, tag, p.tenant_id)
        threshold = cfg.prefer_small_above_budget or 1.0
        return (spent + held) >= threshold * rule.limit_micros
