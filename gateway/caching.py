"""Pipeline stage 5 (cache) and the cache store at settlement, over the `cache` library.

Eligibility and scope come from the config's `cache:` section, overridden per team or key by
`settings.cache` in the directory; per request by `extra_body={"frugate": {"cache": ...}}` or
the `x-frugate-cache-control` header. Entries are scoped to the tenant (and the team when
`per_team`), and the key includes the retrieved RAG chunk ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.responses import Response

from cache import (
    CacheKeys,
    CachePolicy,
    Eligibility,
    Hit,
    ResponseCache,
    eligibility,
    hit_response,
    parse_controls,
    request_keys,
)
from gateway.config import Cache as CacheSettings
from gateway.errors import InvalidRequest
from gateway.responses import JSONBytes, replay_sse

if TYPE_CHECKING:
    from gateway.pipeline import Job
    from gateway.relay import StreamOutcome

log = logging.getLogger("frugate.cache")
_POLICY_FIELDS = {f.name for f in fields(CachePolicy)}


@dataclass(slots=True)
class CacheState:
    """What the cache stage decided for one request."""

    policy: CachePolicy
    elig: Eligibility
    keys: CacheKeys | None = None


class Caching:
    def __init__(self, cache: ResponseCache, settings: CacheSettings, embedder: Any) -> None:
        self.cache = cache
        self.settings = settings
        self.embedder = embedder
        self.base = CachePolicy(**{k: v for k, v in settings.model_dump().items()
                                   if k in _POLICY_FIELDS})
        self._writes: set[asyncio.Task[None]] = set()

    def policy(self, job: Job) -> CachePolicy:
        override = job.principal.settings.get("cache")
        if not isinstance(override, dict) or not override:
            return self.base
        merged = {f: getattr(self.base, f) for f in _POLICY_FIELDS}
        merged.update({k: v for k, v in override.items() if k in _POLICY_FIELDS})
        return CachePolicy(**merged)

    def admit(self, job: Job) -> bool:
        """Decide eligibility; True when the cache may be read for this request."""
        if job.call.endpoint != "chat":
            return False
        policy = self.policy(job)
        body = job.body
        if job.controls.cache is not None or job.controls.cache_ttl is not None:
            body = {**body, "frugate": {"cache": _control_value(job)}}
        try:
            controls = parse_controls(body, job.call.headers)
        except ValueError as exc:
            raise InvalidRequest(f"Invalid cache control: {exc}", param="frugate.cache") from None
        elig = eligibility(job.body, policy, controls)
        job.cache_keys = state = CacheState(policy, elig)
        if elig.bypass:
            self.cache.metrics.bypass += 1
            return False
        p = job.principal
        rag_ids = [h.chunk_id for h in job.chunks or ()]
        state.keys = request_keys(job.body, policy.scope(p.tenant_id, p.team_id),
                                  model=job.req.model, rag_ids=rag_ids)
        job.record.cache_status = "miss"
        return elig.read

    def semantic(self, job: Job) -> bool:
        st: CacheState = job.cache_keys
        return st.elig.semantic and st.keys is not None and bool(st.keys.text)

    async def lookup_exact(self, job: Job) -> Hit | None:
        st: CacheState = job.cache_keys
        assert st.keys is not None
        return await self.cache.lookup_exact(st.keys)

    async def lookup_semantic(self, job: Job, vector: Any) -> Hit | None:
        st: CacheState = job.cache_keys
        assert st.keys is not None
        return await self.cache.lookup_semantic(st.keys, vector, delta=st.policy.delta)

    def respond(self, job: Job, hit: Hit, headers: dict[str, str]) -> Response:
        """The cached answer, re-stamped, as JSON or as a well-formed SSE stream."""
        body = hit_response(hit.response, model=hit.response.get("model"),
                            completion_id=f"chatcmpl-{job.call.request_id}")
        headers = {**headers, "x-frugate-cache-kind": hit.kind,
                   "x-frugate-cache-similarity": f"{hit.similarity:.4f}"}
        saved = job.record.baseline_micros
        self.cache.metrics.record_saving(saved, job.record.prompt_tokens
                                         + job.record.completion_tokens)
        if not job.req.stream:
            if job.citations is not None:
                body["frugate"] = {"citations": job.citations}
            return JSONBytes(orjson.dumps(body), headers=headers)
        return replay_sse(job, body, headers)

    def store(self, job: Job, payload: dict[str, Any]) -> None:
        """Remember a finished non-streamed answer (in the background)."""
        st: CacheState | None = job.cache_keys
        if st is None or not st.elig.write or st.keys is None or not _cacheable(payload):
            return
        self._spawn(self._put(job, st, payload))

    def store_stream(self, job: Job, outcome: StreamOutcome) -> None:
        """Remember a finished stream, rebuilt as the chat completion it streamed."""
        st: CacheState | None = job.cache_keys
        if st is None or not st.elig.write or st.keys is None:
            return
        payload = _completion_from_stream(outcome, job.record)
        if payload is not None and _cacheable(payload):
            self._spawn(self._put(job, st, payload))

    async def _put(self, job: Job, st: CacheState, payload: dict[str, Any]) -> None:
        assert st.keys is not None
        try:
            vector = job.vector
            if vector is None and st.elig.semantic and st.keys.text:
                vector = await self.embedder.embed_query(job.query_text)
            await self.cache.put(st.keys, payload, vector, ttl_s=st.elig.ttl_s)
        except Exception:
            log.exception("cache store failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def purge(self, tenant: str, team: str | None, model: str | None) -> int:
        return await self.cache.purge(tenant, team=team, model=model)

    async def run_upkeep(self, every_s: float = 30.0) -> None:
        """Expire stale entries and persist the embedded store, periodically."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.cache.expire()
                persist = getattr(self.cache.store, "persist", None)
                if persist is not None:
                    await persist()
            except Exception:
                log.exception("cache upkeep failed")

    async def close(self) -> None:
        for t in list(self._writes):
            with contextlib.suppress(Exception):
                await t
        await self.cache.close()

    def collect(self) -> Iterator[Metric]:
        """The cache library's counters as Prometheus metrics (read at scrape time)."""
        snap = self.cache.metrics.snapshot()
        lookups = CounterMetricFamily("frugate_cache_lookups", "Cache lookups by outcome.",
                                      labels=["result", "kind"])
        for kind, n in snap["hits"].items():
            lookups.add_metric(["hit", kind], n)
        for kind, n in snap["misses"].items():
            lookups.add_metric(["miss", kind], n)
        lookups.add_metric(["bypass", "-"], snap["bypass"])
        yield lookups
        for name, doc in (("verifier_rejections", "Semantic candidates the verifier refused."),
                          ("stores", "Responses stored."), ("evictions", "Entries evicted.")):
            c = CounterMetricFamily(f"frugate_cache_{name}", doc)
            c.add_metric([], snap[name])
            yield c
        entries = GaugeMetricFamily("frugate_cache_entries", "Entries in the local index.")
        entries.add_metric([], snap["entries"])
        yield entries
        saved = CounterMetricFamily("frugate_cache_saved_usd", "Upstream cost avoided by hits.")
        saved.add_metric([], snap["saved_micro_usd"] / 1e6)
        yield saved


def _control_value(job: Job) -> Any:
    ctl = job.controls
    value: dict[str, Any] = {}
    if ctl.cache == "no-cache":
        value["no_cache"] = True
    elif ctl.cache == "no-store":
        value["no_store"] = True
    elif ctl.cache in ("bypass", "no-cache,no-store"):
        value.update(no_cache=True, no_store=True)
    if ctl.cache_ttl is not None:
        value["ttl"] = ctl.cache_ttl
    return value or None


def _cacheable(payload: dict[str, Any]) -> bool:
    choices = payload.get("choices") or []
    return bool(choices) and all(c.get("finish_reason") in ("stop", "length", "tool_calls")
                                 for c in choices)


def _completion_from_stream(out: StreamOutcome, rec: Any) -> dict[str, Any] | None:
    text: list[str] = []
    finish = None
    for raw in out.payloads:
        try:
            chunk = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0 or (choice.get("delta") or {}).get("tool_calls"):
                return None  # n > 1 and tool calls are not rebuilt; they are not cached
            text.append((choice.get("delta") or {}).get("content") or "")
            finish = choice.get("finish_reason") or finish
    if finish is None:
        return None
    return {"id": "", "object": "chat.completion", "created": int(time.time()),
            "model": out.model, "choices": [{"index": 0, "finish_reason": finish,
                                             "message": {"role": "assistant",
                                                         "content": "".join(text)}}],
            "usage": out.usage or {"prompt_tokens": rec.prompt_tokens,
                                   "completion_tokens": rec.completion_tokens,
                                   "total_tokens": rec.prompt_tokens + rec.completion_tokens}}
