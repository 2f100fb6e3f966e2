"""The one state object of a gateway process, built by the app's lifespan.

Everything request handlers use hangs off this object; there are no module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from embedder import BatchingEmbedder, Embedder
from embedder.window import default_window
from gateway.accounting.admission import Admission
from gateway.accounting.ledger import BatchWriter
from gateway.accounting.ledger_stream import LedgerConsumer
from gateway.accounting.memory import MemoryAdmission
from gateway.accounting.meter import Meter
from gateway.accounting.prices import ModelPrice
from gateway.accounting.redis_admission import RedisAdmission
from gateway.accounting.webhooks import WebhookNotifier
from gateway.catalog import Catalog
from gateway.config import Limits, Settings
from gateway.metrics import Metrics
from gateway.overload import Gate
from gateway.storage import connect, create_schema
from gateway.tenancy import Directory
from gateway.tenancy.invalidation import Invalidator
from gateway.tokens import encoding
from gateway.tracing import Tracer, build_tracer
from gateway.upstream import Monitor, Pool

log = logging.getLogger("frugate")


@dataclass
class State:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    directory: Directory
    pools: dict[str, Pool]
    catalog: Catalog
    admission: Admission
    ledger: BatchWriter
    meter: Meter
    monitor: Monitor
    metrics: Metrics
    embedder: BatchingEmbedder
    redis: Any = None
    ledger_consumer: LedgerConsumer | None = None
    invalidator: Invalidator = field(init=False)  # admin changes -> every replica
    webhooks: WebhookNotifier = field(init=False)  # soft-limit notices
    caching: Any = None  # gateway.caching.Caching once wired
    grounding: Any = None  # gateway.grounding.Grounding once wired
    routing: Any = None  # gateway.routing.Routing once wired
    gate: Gate = field(default_factory=lambda: Gate.from_limits(Limits()))
    pipeline: Any = None  # gateway.pipeline.Pipeline
    embeddings: Any = None  # gateway.embeddings.EmbeddingsServing
    tracer: Tracer = field(default_factory=Tracer)  # OpenTelemetry; a no-op unless enabled
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _settling: set[asyncio.Future[None]] = field(default_factory=set)

    def track_settlement(self, pending: Awaitable[None]) -> None:
        """Finish a settlement in the background; `close_state` waits for all of them."""
        fut = asyncio.ensure_future(pending)
        self._settling.add(fut)
        fut.add_done_callback(self._settling.discard)

    def models_listing(self, principal: Any) -> bytes:
        import orjson

        data = []
        for name, pool in self.catalog.listed():
            if not principal.may_use(name) and not (pool and principal.may_use(pool.name)):
                continue
            if pool is None:
                pol = self.catalog.policies[name]
                ctx = min(self.pools[pol.small].config.max_context,
                          self.pools[pol.large].config.max_context)
                extra = {"kind": "routing_policy", "pools": [pol.small, pol.large]}
            else:
                ctx, extra = pool.config.max_context, {"kind": pool.config.kind, "pool": pool.name}
            data.append({"id": name, "object": "model", "created": 0, "owned_by": "frugate",
                         "max_model_len": ctx, "frugate": extra})
        for name in self.embeddings.model_names():
            if all(d["id"] != name for d in data) and principal.may_use(name):
                data.append({"id": name, "object": "model", "created": 0, "owned_by": "frugate",
                             "frugate": {"kind": "embedding"}})
        return orjson.dumps({"object": "list", "data": data})


async def _build_cache(settings: Settings, state: State) -> Any:
    from cache import MemoryStore, RedisStore, ResponseCache
    from gateway.caching import Caching

    c = settings.cache
    store: Any
    if state.redis is not None:  # entries in Redis; every replica's index follows its stream
        store = RedisStore(state.redis, namespace=settings.redis_prefix,
                           max_entries=c.max_entries)
    else:
        store = MemoryStore(max_entries=c.max_entries, path=settings.data_dir / "cache.jsonl")
    cache = ResponseCache(store, dim=state.embedder.dim, delta=c.delta)
    await cache.open()
    return Caching(cache, c, state.embedder)


def connect_redis(url: str, max_connections: int = 512) -> aioredis.Redis:
    """A client whose pool waits for a free connection instead of failing under load."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=5.0, socket_timeout=5.0,
        socket_connect_timeout=2.0, health_check_interval=10)
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool


def _baseline(settings: Settings) -> str | None:
    if settings.routing.baseline_pool:
        return settings.routing.baseline_pool
    chat = [p for p in settings.pools if p.kind == "chat"]
    if not chat:
        return None
    return max(chat, key=lambda p: (p.price.output, p.price.input)).name


async def build_state(settings: Settings, embedder: Embedder | None = None) -> State:
    engine, sessions = connect(settings.sqlalchemy_url)
    await create_schema(engine)
    directory = Directory(sessions)
    await directory.reload_all()
    pools = {c.name: Pool(c) for c in settings.pools}
    catalog = Catalog(list(pools.values()), settings.routing.policies)
    redis = None
    admission: Admission
    consumer: LedgerConsumer | None = None
    if settings.redis_url:
        redis = connect_redis(settings.redis_url)
        admission = RedisAdmission(redis, prefix=settings.redis_prefix,
                                   hold_ttl_s=settings.admission.hold_ttl_s,
                                   fail_open=settings.admission.fail_open)
        consumer = LedgerConsumer(redis, sessions, prefix=settings.redis_prefix,
                                  claim_idle_ms=settings.ledger.claim_idle_ms,
                                  flush_ms=settings.ledger.flush_ms)
    else:
        admission = MemoryAdmission(hold_ttl_s=settings.admission.hold_ttl_s)
    ledger = BatchWriter(sessions, flush_ms=settings.ledger.flush_ms,
                         flush_rows=settings.ledger.flush_rows)
    config_prices = {c.name: ModelPrice.from_config(c.price) for c in settings.pools}
    meter = Meter(admission, directory, ledger, config_prices, _baseline(settings),
                  cache_price=ModelPrice.from_config(settings.cache.price))
    monitor = Monitor(pools.values(), settings.upstream)
    metrics = Metrics(pools.values())
    await asyncio.to_thread(encoding)  # load the BPE file now, not on the first request
    if embedder is None:
        from embedder import MiniLMEmbedder

        embedder = await asyncio.to_thread(MiniLMEmbedder)
    await asyncio.to_thread(default_window)  # its tokenizer, loaded before the first request
    state = State(settings, engine, sessions, directory, pools, catalog, admission, ledger,
                  meter, monitor, metrics, BatchingEmbedder(embedder), redis=redis,
                  ledger_consumer=consumer)
    from gateway.embeddings import EmbeddingsServing
    from gateway.pipeline import Pipeline

    state.gate = Gate.from_limits(settings.limits)
    if settings.rag.enabled:
        from gateway.grounding import Grounding
        from rag import CollectionStore

        root = settings.rag.data_dir or settings.data_dir / "rag"
        store = await asyncio.to_thread(CollectionStore, root, state.embedder)
        state.grounding = Grounding(store, settings.rag)
    state.tracer = build_tracer(settings.tracing)
    if settings.cache.enabled:
        state.caching = await _build_cache(settings, state)
        state._tasks.append(asyncio.create_task(state.caching.run_upkeep()))
        metrics.add_collector(state.caching.collect)
    if settings.routing.policies:
        from gateway.routing import Routing
        from router import load_default

        router = await asyncio.to_thread(load_default)
        state.routing = Routing(router, settings.routing.policies, state)
    state.pipeline = Pipeline(state)
    state.embeddings = EmbeddingsServing(state)
    state.invalidator = Invalidator(directory, redis,
                                    channel=f"{settings.redis_prefix}:invalidate")
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    state.webhooks = WebhookNotifier(sessions, directory, secret)
    meter.on_crossing = state.webhooks.on_crossing
    state.invalidator.start()
    state.webhooks.start()
    ledger.start()
    if consumer is not None:
        consumer.start()
    monitor.start()
    # Everything built so far (models, indexes, tables) lives as long as the process: keep it
    # out of the garbage collector's full passes, which otherwise stall requests for ms.
    gc.collect()
    gc.freeze()
    state.ready.set()
    return state


async def close_state(state: State) -> None:
    if state._settling:  # their ledger rows and soft-limit notices, before those stop
        await asyncio.wait(set(state._settling), timeout=10)
    for t in state._tasks:
        t.cancel()
    for t in state._tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    if state.caching is not None:
        await state.caching.close()
    await state.monitor.stop()
    await state.invalidator.stop()
    await state.webhooks.stop()
    await state.ledger.stop()
    if state.ledger_consumer is not None:
        await state.ledger_consumer.stop()
    await state.admission.close()
    if state.redis is not None:
        await state.redis.aclose()
    for pool in state.pools.values():
        await pool.aclose()
    if state.grounding is not None:
        state.grounding.close()
    state.embedder.close()
    await asyncio.to_thread(state.tracer.close)  # flushes spans still batched
    state.metrics.access_log.flush()
    await state.engine.dispose()
