"""Prometheus metrics of the gateway, in a registry owned by the app (no global state)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.upstream.pool import Pool

if TYPE_CHECKING:
    from gateway.pipeline import Job

log = logging.getLogger("frugate.access")

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


class Metrics:
    def __init__(self, pools: Iterable[Pool],
                 extra: Iterable[Callable[[], Iterable[Metric]]] = ()) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("frugate_requests_total", "Requests by endpoint, pool and outcome.",
                                ["endpoint", "pool", "status", "cache"], registry=r)
        self.latency = Histogram("frugate_request_duration_seconds", "Total request time.",
                                 ["endpoint", "stream"], buckets=_LATENCY, registry=r)
        self.overhead = Histogram("frugate_overhead_seconds",
                                  "Time the gateway adds on top of the upstream.",
                                  ["endpoint"], buckets=_OVERHEAD, registry=r)
        self.ttft = Histogram("frugate_ttft_seconds", "Time to first streamed byte.", ["pool"],
                              buckets=_LATENCY, registry=r)
        self.tokens = Counter("frugate_tokens_total", "Tokens billed.", ["pool", "kind"],
                              registry=r)
        self.cost = Counter("frugate_cost_usd_total", "Cost billed, USD.", ["pool"], registry=r)
        self.savings = Counter("frugate_savings_usd_total",
                               "Saved against the all-large baseline, USD.", ["cause"], registry=r)
        self.rejected = Counter("frugate_rejected_total", "Requests refused before dispatch.",
                                ["reason"], registry=r)
        self.routes = Counter("frugate_route_decisions_total", "Router decisions.",
                              ["policy", "pool", "reason"], registry=r)
        self.cache = Counter("frugate_cache_lookups_total", "Cache lookups.", ["result", "kind"],
                             registry=r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.access_log = AccessLog(log)
        self._collector = _PoolCollector(list(pools), list(extra))
        r.register(self._collector)

    def add_collector(self, fn: Callable[[], Iterable[Metric]]) -> None:
        """Metrics some other component renders at scrape time (e.g. the cache's counters)."""
        self._collector.extra.append(fn)

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(...)`, remembered: the lookup is measurable on the hot path."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, rec: Any, job: Job, streamed: bool) -> None:
        pool = rec.pool or "-"
        c = self._child
        c(self.requests, rec.endpoint, pool, rec.status, rec.cache_status).inc()
        c(self.latency, rec.endpoint, "true" if streamed else "false").observe(
            rec.latency_ms / 1000)
        if job.overhead_ms is not None:
            c(self.overhead, rec.endpoint).observe(job.overhead_ms / 1000)
        if rec.ttft_ms is not None:
            c(self.ttft, pool).observe(rec.ttft_ms / 1000)
        if rec.prompt_tokens:
            c(self.tokens, pool, "prompt").inc(rec.prompt_tokens)
        if rec.completion_tokens:
            c(self.tokens, pool, "completion").inc(rec.completion_tokens)
        if rec.cost_micros:
            c(self.cost, pool).inc(rec.cost_micros / 1e6)
        if rec.cache_savings_micros:
            c(self.savings, "cache").inc(rec.cache_savings_micros / 1e6)
        if rec.routing_savings_micros:
            c(self.savings, "routing").inc(rec.routing_savings_micros / 1e6)
        if self.access_log.enabled:
            self.access_log.write({
                "msg": "request", "request_id": rec.request_id, "key_id": rec.key_id,
                "team_id": rec.team_id, "endpoint": rec.endpoint, "model": rec.requested_model,
                "pool": rec.pool, "status": rec.status, "error_type": rec.error_type,
                "cache": rec.cache_status, "route": rec.route_decision,
                "latency_ms": round(rec.latency_ms, 3),
                "ttft_ms": None if rec.ttft_ms is None else round(rec.ttft_ms, 3),
                "prompt_tokens": rec.prompt_tokens,
                "completion_tokens": rec.completion_tokens,
                "cost_usd": rec.cost_micros / 1e6, "stream": streamed})

    def render(self) -> bytes:
        return generate_latest(self.registry)


class AccessLog:
    """One JSON line per request, written straight to the `frugate.access` logger's handlers.

    The same line the logging machinery would produce, without building a LogRecord per
    request (measurable at 1,000 requests/s). Lines go out together at most `FLUSH_S` after
    the first of them (or every `MAX_LINES`): stderr is line-buffered, and a write per
    request was ~6% of the event loop at c=16. Falls back to `logging` for other handlers.
    """

    FLUSH_S = 0.02
    MAX_LINES = 256

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._pending: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def write(self, fields: dict[str, Any]) -> None:
        streams = _json_streams(self.logger)
        if streams is None:
            msg = fields.pop("msg")
            self.logger.info(msg, extra={"fields": fields})
            return
        now = time.time()
        line = orjson.dumps({"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                             + f".{int(now % 1 * 1000):03d}Z", "level": "info",
                             "logger": self.logger.name, **fields}) + b"\n"
        self._pending.append(line.decode())
        if len(self._pending) >= self.MAX_LINES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop to flush later: write now
                self.flush()
            else:
                self._timer = loop.call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        """Write the pending lines (shutdown calls this too)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        for stream in _json_streams(self.logger) or ():
            stream.write(text)


def _json_streams(logger: logging.Logger) -> list[Any] | None:
    """The streams of the JSON stream handlers serving `logger`, if that is all there is."""
    from gateway.logs import JSONFormatter

    handlers: list[logging.Handler] = []
    lg: logging.Logger | None = logger
    while lg is not None:
        handlers.extend(lg.handlers)
        if not lg.propagate:
            break
        lg = lg.parent
    if not handlers or not all(type(h) is logging.StreamHandler
                               and isinstance(h.formatter, JSONFormatter) for h in handlers):
        return None
    return [h.stream for h in handlers]  # type: ignore[attr-defined]


class _PoolCollector(Collector):
    """Replica state, read at scrape time."""

    def __init__(self, pools: list[Pool], extra: list[Callable[[], Iterable[Metric]]]) -> None:
        self.pools = pools
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        labels = ["pool", "replica"]
        up = GaugeMetricFamily("frugate_replica_up", "1 if the replica takes traffic.",
                               labels=labels)
        inflight = GaugeMetricFamily("frugate_replica_in_flight",
                                     "Requests the gateway has open on the replica.",
                                     labels=labels)
        waiting = GaugeMetricFamily("frugate_replica_waiting",
                                    "vllm:num_requests_waiting (scraped).", labels=labels)
        running = GaugeMetricFamily("frugate_replica_running",
                                    "vllm:num_requests_running (scraped).", labels=labels)
        kv = GaugeMetricFamily("frugate_replica_kv_cache_usage",
                               "vllm:kv_cache_usage_perc (scraped).", labels=labels)
        prefix = GaugeMetricFamily("frugate_replica_prefix_cache_hit_rate",
                                   "Prefix-cache hits / queries (scraped).", labels=labels)
        accept = GaugeMetricFamily("frugate_pool_spec_acceptance_rate",
                                   "Accepted / proposed draft tokens.", labels=["pool"])
        mean_len = GaugeMetricFamily("frugate_pool_spec_mean_accepted_length",
                                     "Tokens per speculative step: 1 + accepted / drafts.",
                                     labels=["pool"])
        for pool in self.pools:
            drafts = draft_tokens = accepted = 0.0
            for r in pool.replicas:
                lv = [pool.name, r.url]
                up.add_metric(lv, 1.0 if r.available() else 0.0)
                inflight.add_metric(lv, r.in_flight)
                waiting.add_metric(lv, r.waiting)
                running.add_metric(lv, r.running)
                kv.add_metric(lv, r.kv_usage)
                if r.prefix_hit_rate is not None:
                    prefix.add_metric(lv, r.prefix_hit_rate)
                drafts += r.spec.drafts
                draft_tokens += r.spec.draft_tokens
                accepted += r.spec.accepted_tokens
            if draft_tokens:
                accept.add_metric([pool.name], accepted / draft_tokens)
            if drafts:
                mean_len.add_metric([pool.name], 1.0 + accepted / drafts)
        yield from (up, inflight, waiting, running, kv, prefix, accept, mean_len)
        for fn in self.extra:
            yield from fn()
