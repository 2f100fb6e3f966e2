"""One upstream vLLM replica: load signals and a circuit breaker."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SpecStats:
    """Cumulative speculative-decoding counters scraped from vLLM's /metrics."""

    drafts: float = 0.0
    draft_tokens: float = 0.0
    accepted_tokens: float = 0.0


@dataclass
class Replica:
    url: str
    pool: str
    speculative: bool = False
    # The gateway's own count of requests it has open on this replica.
    in_flight: int = 0
    # Scraped from vLLM /metrics.
    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0
    prefix_hit_rate: float | None = None
    spec: SpecStats = field(default_factory=SpecStats)
    scraped_at: float = 0.0
    # Active health: False from a failed /health probe until one passes.
    health_ok: bool = True
    slow_probes: int = 0  # health probes in a row that timed out
    # Circuit breaker (passive): ejected until `ejected_until`, then tried again.
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    last_error: str | None = None
    origin: Any = None  # transport.Origin, set by the pool

    def available(self, now: float | None = None) -> bool:
        if not self.health_ok:
            return False
        return (now if now is not None else time.monotonic()) >= self.ejected_until

    @property
    def healthy(self) -> bool:
        return self.available()

    def load(self) -> float:
        """Queue pressure: our open requests plus the replica's own waiting queue."""
        return self.in_flight + self.waiting

    def batch_size(self) -> float:
        """Sequences the replica is decoding now (at least what we have open on it)."""
        return max(self.running, float(self.in_flight))

    def record_success(self) -> None:
        self.failures = 0
        if self.ejections and self.available():
            self.ejections = 0

    def record_failure(self, reason: str, *, threshold: int, base_s: float, max_s: float,
                       hard: bool = False) -> bool:
        """Count a failure; eject after `threshold` in a row (at once when `hard`).

        Returns True when this failure ejected the replica.
        """
        self.failures += 1
        self.last_error = reason
        if not hard and self.failures < threshold:
            return False
        backoff = min(max_s, base_s * (2 ** min(self.ejections, 16)))
        self.ejections += 1
        self.failures = 0
        self.ejected_until = time.monotonic() + backoff
        return True

    def readmit(self) -> None:
        self.health_ok = True
        self.ejected_until = 0.0
        self.failures = 0
        self.last_error = None
