"""Background upkeep of replica state: active health checks and vLLM /metrics scraping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

import httpx

from gateway.config import Upstream as UpstreamSettings
from gateway.upstream.pool import Pool
from gateway.upstream.replica import Replica

log = logging.getLogger("frugate.upstream")

# vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc; accept both.
_GAUGES = {
    "vllm:num_requests_waiting": "waiting",
    "vllm:num_requests_running": "running",
    "vllm:kv_cache_usage_perc": "kv_usage",
    "vllm:gpu_cache_usage_perc": "kv_usage",
}
_SPEC = {
    "vllm:spec_decode_num_drafts_total": "drafts",
    "vllm:spec_decode_num_draft_tokens_total": "draft_tokens",
    "vllm:spec_decode_num_accepted_tokens_total": "accepted_tokens",
}
_PREFIX = ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total")


def parse_metrics(text: str) -> dict[str, float]:
    """Sum each metric over its label sets (a replica serves one model)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name_end = min(i for i in (line.find("{"), line.find(" ")) if i >= 0)
        name = line[:name_end]
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        out[name] = out.get(name, 0.0) + value
    return out


def apply_metrics(replica: Replica, values: dict[str, float]) -> None:
    for name, attr in _GAUGES.items():
        if name in values:
            setattr(replica, attr, values[name])
    for name, attr in _SPEC.items():
        if name in values:
            setattr(replica.spec, attr, values[name])
    queries, hits = (values.get(n) for n in _PREFIX)
    if queries:
        replica.prefix_hit_rate = (hits or 0.0) / queries
    replica.scraped_at = time.monotonic()


class SpeculationWatch:
    """Per-pool speculative-decoding acceptance over the last scrape interval.

    Logs a warning when the acceptance rate falls below `floor` (the drafts are mostly wasted
    work: the pool would be faster without speculation) and again when it recovers.
    """

    def __init__(self, pool: str, floor: float, min_draft_tokens: float = 200) -> None:
        self.pool = pool
        self.floor = floor
        self.min_draft_tokens = min_draft_tokens
        self._last: tuple[float, float] | None = None
        self.rate: float | None = None
        self.collapsed = False

    def update(self, pool: Pool) -> None:
        drafted = sum(r.spec.draft_tokens for r in pool.replicas)
        accepted = sum(r.spec.accepted_tokens for r in pool.replicas)
        last, self._last = self._last, (drafted, accepted)
        if last is None or drafted - last[0] < self.min_draft_tokens:
            return  # too little speculation since the last look to judge
        self.rate = (accepted - last[1]) / (drafted - last[0])
        if self.rate < self.floor and not self.collapsed:
            self.collapsed = True
            log.warning("speculative decoding acceptance collapsed in pool %s: %.2f < %.2f",
                        self.pool, self.rate, self.floor)
        elif self.rate >= self.floor and self.collapsed:
            self.collapsed = False
            log.info("speculative decoding acceptance recovered in pool %s: %.2f",
                     self.pool, self.rate)


class Monitor:
    """Runs health checks and scrapes for every replica of every pool."""

    def __init__(self, pools: Iterable[Pool], settings: UpstreamSettings) -> None:
        self.pools = list(pools)
        self.settings = settings
        self._tasks: list[asyncio.Task[None]] = []
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(2.0), trust_env=False)
        self.speculation = {p.name: SpeculationWatch(p.name, settings.spec_collapse_rate)
                            for p in self.pools}

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(self.settings.health_interval_s, self.check_health)),
            asyncio.create_task(self._loop(self.settings.scrape_interval_s, self.scrape)),
        ]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self._client.aclose()

    async def _loop(self, interval: float, job: object) -> None:
        while True:
            try:
                await job()  # type: ignore[operator]
            except Exception:  # keep the loop alive whatever one round does
                log.exception("upstream monitor round failed")
            await asyncio.sleep(interval)

    def _replicas(self) -> list[tuple[Pool, Replica]]:
        return [(p, r) for p in self.pools for r in p.replicas]

    async def check_health(self) -> None:
        await asyncio.gather(*(self._health_one(p, r) for p, r in self._replicas()))

    async def _health_one(self, pool: Pool, replica: Replica) -> None:
        try:
            resp = await self._client.get(replica.url + "/health", headers=_auth(pool))
            ok = resp.status_code == 200
            replica.slow_probes = 0
        except httpx.TimeoutException:
            # A busy server (a long prefill on a CPU, a GC pause) answers late: eject only after
            # `eject_after_failures` slow probes in a row. A refusal or an error status is final.
            replica.slow_probes += 1
            if replica.slow_probes < self.settings.eject_after_failures:
                return  # neither ejects nor readmits
            ok = False
        except httpx.HTTPError:
            ok = False
        if ok and not replica.available():
            replica.readmit()
            log.info("readmitted replica %s of pool %s", replica.url, pool.name)
        elif not ok and replica.health_ok:
            replica.health_ok = False  # out until a probe passes again
            replica.last_error = "health check failed"
            log.warning("ejected replica %s of pool %s: health check failed", replica.url,
                        pool.name)

    async def scrape(self) -> None:
        await asyncio.gather(*(self._scrape_one(p, r) for p, r in self._replicas()))
        for pool in self.pools:
            self.speculation[pool.name].update(pool)

    async def _scrape_one(self, pool: Pool, replica: Replica) -> None:
        try:
            resp = await self._client.get(replica.url + "/metrics", headers=_auth(pool))
        except httpx.HTTPError:
            return
        if resp.status_code == 200:
            apply_metrics(replica, parse_metrics(resp.text))


def _auth(pool: Pool) -> dict[str, str]:
    key = pool.config.api_key
    return {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}
