"""Replica pools and their selection policy."""

from __future__ import annotations

import random
from collections.abc import Iterable

import httpx

from gateway.config import Pool as PoolConfig
from gateway.upstream.replica import Replica
from gateway.upstream.transport import HTTP11Transport, Origin


class Pool:
    """A named set of vLLM replicas serving one model, with one shared HTTP client."""

    def __init__(self, config: PoolConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.name = config.name
        self.model = config.model
        self.replicas = [
            Replica(url=r.url.rstrip("/"), pool=config.name, speculative=r.speculative)
            for r in config.replicas
        ]
        for r in self.replicas:
            r.origin = Origin(r.url)
        headers = {}
        if config.api_key is not None:
            headers["authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        # Header lines of every proxied request (the hot path writes them as they are).
        self.request_headers = b"content-type: application/json\r\n" + b"".join(
            f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
        t = config.timeouts
        # One transport (connection pool) per pool: the hot path posts through it directly,
        # and this httpx client, for everything else (/tokenize, ...), shares its connections.
        self.transport = HTTP11Transport(max_idle_per_host=config.max_connections)
        self.client = client or httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(connect=t.connect_s, read=t.first_byte_s, write=t.first_byte_s,
                                  pool=t.connect_s),
            transport=self.transport,
            trust_env=False,
        )

    def healthy_replicas(self) -> list[Replica]:
        return [r for r in self.replicas if r.available()]

    @property
    def healthy(self) -> bool:
        return any(r.available() for r in self.replicas)

    def saturated(self) -> bool:
        """Every available replica has requests queued: new work would wait."""
        live = self.healthy_replicas()
        return bool(live) and all(r.waiting > 0 for r in live)

    def pick(self, exclude: Iterable[Replica] = ()) -> Replica | None:
        """Power of two choices over load; speculation-aware when the pool mixes replicas.

        Speculating replicas are preferred while their batch is small (where speculation
        pays); past `spec_max_running` they compete on load like any other replica.
        """
        excluded = set(map(id, exclude))
        live = [r for r in self.replicas if id(r) not in excluded and r.available()]
        if not live:
            return None
        if len(live) == 1:
            return live[0]
        limit = self.config.spec_max_running
        fast = [r for r in live if r.speculative and r.batch_size() < limit]
        if fast and len(fast) < len(live):
            live = fast
            if len(live) == 1:
                return live[0]
        a, b = random.sample(live, 2)
        return a if a.load() <= b.load() else b

    async def aclose(self) -> None:
        await self.client.aclose()
