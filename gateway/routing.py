"""Pipeline stage 7 for routing policies (`model: "auto"` ...): the router picks the pool.

The router scores the request's last user turn (its shared embedding plus cheap text
features); the policy compares the score with its calibrated threshold and applies the
overrides: context overflow -> large, an unhealthy or saturated pool -> the other one (if the
policy allows degrading), a team near its budget -> small (if configured).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.accounting.periods import period_bounds
from gateway.config import RoutingPolicy
from gateway.upstream.pool import Pool
from router import Policy, Router

if TYPE_CHECKING:
    from gateway.pipeline import Job
    from gateway.state import State


class Routing:
    def __init__(self, router: Router, configs: list[RoutingPolicy], state: State) -> None:
        self.router = router
        self.state = state
        self.configs = {c.name: c for c in configs}
        self.policies: dict[str, Policy] = {
            c.name: router.policy(c.name, c.small, c.large, large_share=c.large_share,
                                  quality=c.quality, allow_degrade=c.allow_degrade,
                                  prefer_small_near_budget=c.prefer_small_above_budget is not None)
            for c in configs}

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
                          near_budget=near)
        rec = job.record
        rec.route_decision = f"{cfg.name}:{d.tier}:{d.reason}"
        rec.route_score = round(float(score), 6)
        self.state.metrics.routes.labels(cfg.name, d.pool, d.reason).inc()
        return pools[d.pool]

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
