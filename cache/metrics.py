"""Cache counters the gateway exports (Prometheus or the dashboard): plain numbers,
one object per cache, no global registry."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LATENCY_BUCKETS_MS", "CacheMetrics"]

LATENCY_BUCKETS_MS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0)


@dataclass
class CacheMetrics:
    hits: dict[str, int] = field(default_factory=lambda: {"exact": 0, "semantic": 0})
    misses: dict[str, int] = field(default_factory=lambda: {"exact": 0, "semantic": 0})
    bypass: int = 0
    verifier_rejections: int = 0
    stores: int = 0
    evictions: int = 0
    entries: int = 0
    saved_micro_usd: int = 0
    saved_tokens: int = 0
    # Cumulative histogram of lookup latency; the last bucket is +Inf.
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    latency_sum_ms: float = 0.0
    latency_count: int = 0

    def observe_latency(self, ms: float) -> None:
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] += 1
        self.latency_sum_ms += ms
        self.latency_count += 1

    def record_saving(self, micro_usd: int, tokens: int) -> None:
        """Called by the gateway when it serves a hit: what the upstream call would have cost."""
        self.saved_micro_usd += micro_usd
        self.saved_tokens += tokens

    def snapshot(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for count in self.latency_buckets:
            running += count
            cumulative.append(running)
        return {
            "hits": dict(self.hits),
            "misses": dict(self.misses),
            "bypass": self.bypass,
            "verifier_rejections": self.verifier_rejections,
            "stores": self.stores,
            "evictions": self.evictions,
            "entries": self.entries,
            "saved_micro_usd": self.saved_micro_usd,
            "saved_tokens": self.saved_tokens,
            "latency_ms": {
                "buckets": [*LATENCY_BUCKETS_MS, float("inf")],
                "cumulative": cumulative,
                "sum": self.latency_sum_ms,
                "count": self.latency_count,
            },
        }
