"""The request pipeline: every model call goes through these stages, in this order.

    1 authenticate   virtual key -> Principal (in-memory directory, no SQL)
    2 admit          one atomic step: RPM/TPM windows + budget hold on key, team and tenant
    3 embed          the last user turn (both ends if long), once, when a later stage needs it
    4 retrieve       RAG, if asked: top-k chunks of the tenant's collection
    5 ground         RAG: a grounding message with numbered sources joins the prompt
    6 cache          exact, then semantic lookup in the caller's scope (key includes chunk ids)
    7 route          explicit model -> its pool; routing policy -> the router picks small/large
    8 dispatch       a replica of the pool (power of two choices), retried before the first byte
      (8b cascade)   a cascade policy's small answer, if unsure, is replaced by large's
    9 relay          the upstream JSON or stream, passed through
   10 settle         hold -> actual cost, ledger row, cache store (on every exit path)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response

from gateway import cascade
from gateway.accounting.record import Record
from gateway.cascade import Check
from gateway.catalog import Target
from gateway.errors import ClientClosed, ContextTooLong, FrugateError, InvalidRequest
from gateway.overload import Slot
from gateway.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    FrugateControls,
    parse_body,
)
from gateway.protocol.common import SamplingFields
from gateway.relay import StreamOutcome, StreamRelay
from gateway.responses import JSONBytes, SSEResponse, replay_sse
from gateway.tenancy import Principal, authenticate
from gateway.tokens import count_messages, count_text
from gateway.tracing import OFF
from gateway.upstream import Opened, Pool, open_request
from gateway.upstream.transport import Tap
from gateway.usage import count_partial, usage_counts

if TYPE_CHECKING:
    from gateway.state import State


@dataclass(slots=True)
class Call:
    """One HTTP request as the pipeline sees it."""

    request_id: str
    endpoint: str  # chat | completions
    body: bytes
    headers: dict[str, str]
    started: float  # time.perf_counter()
    # The upstream connection this request goes out on: half-closed if the client leaves.
    tap: Tap = field(default_factory=Tap)
    trace: Any = OFF  # its spans (gateway.tracing), set by Pipeline.run

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass(slots=True)
class Job:
    """What the stages learn about one request as it moves through them."""

    call: Call
    principal: Principal
    req: SamplingFields
    body: dict[str, Any]
    target: Target
    controls: FrugateControls
    prompt_tokens: int
    max_output: int
    record: Record
    slot: Slot
    query_text: str = ""
    vector: Any = None
    cache_keys: Any = None
    chunks: list[Any] | None = None
    citations: list[dict[str, Any]] | None = None
    pool: Pool | None = None
    dispatched_at: float = 0.0
    overhead_ms: float | None = None
    cascade: Check | None = None  # set by the route stage when small's answer gets checked


class Pipeline:
    def __init__(self, state: State) -> None:
        self.s = state

    async def run(self, call: Call) -> Any:
        s = self.s
        t = call.trace = s.tracer.begin(call)  # the request's spans (a shared no-op when off)
        with t.stage("authenticate"):
            principal = authenticate(s.directory, call.authorization)  # 1 authenticate
        with t.stage("queue"):
            slot = await s.gate.enter(principal.tenant_id, len(call.body))  # 2 admit: capacity
        try:
            with t.stage("admit"):
                job = self._prepare(call, principal, slot)
                ticket = await self._admit(job)  # 2 admit: rate limits + budget hold
        except BaseException:
            slot.release()
            raise
        try:
            if s.grounding is not None and s.grounding.wanted(job):
                with t.stage("retrieve"):
                    await s.grounding.retrieve(job, await self._vector(job))  # 3 embed, 4 retrieve
                with t.stage("ground"):
                    s.grounding.ground(job)  # 5 ground
            with t.stage("cache"):
                hit = await self._cached(job)  # 6 cache
            if hit is not None:
                return await self._serve_hit(job, ticket, hit)
            with t.stage("route"):
                job.pool = await self._route(job)  # 7 route
            job.dispatched_at = time.perf_counter()
            with t.stage("dispatch"):
                opened = await open_request(  # 8 dispatch
                    job.pool, _PATHS[call.endpoint], self._upstream_body(job), tap=call.tap,
                    stream=job.req.stream and job.cascade is None, settings=s.settings.upstream,
                    request_id=call.request_id)
            if job.cascade is not None:
                with t.stage("cascade"):
                    opened = await cascade.review(s, job, opened)  # 8b cascade
        except BaseException as exc:
            await self._settle(job, ticket, error=exc)  # 10 settle (releases the hold)
            raise
        if opened.streaming:  # 9 relay (+ 10 settle when the stream ends)
            return self._relay_stream(job, ticket, opened)
        return await self._relay_json(job, ticket, opened)  # replayed as SSE if asked

    async def _admit(self, job: Job) -> Any:
        """One atomic step: RPM/TPM windows and a budget hold sized for the worst case."""
        s = self.s
        extra = s.grounding.token_allowance(job) if s.grounding is not None else 0
        both = cascade.may_cascade(job)  # a cascade may pay for small and large
        estimate = s.meter.estimate([p.name for p in job.target.candidates(s.catalog)],
                                    job.prompt_tokens + extra, job.max_output, all_of=both)
        tokens = job.prompt_tokens + extra + job.max_output
        return await s.meter.admit(job.principal, job.call.request_id, estimate,
                                   tokens * 2 if both else tokens)

    async def _vector(self, job: Job) -> Any:
        """The request's one embedding, computed on first use and shared by every stage."""
        if job.vector is None:
            with job.call.trace.stage("embed"):
                job.vector = await self.s.embedder.embed_query(job.query_text)
        return job.vector

    async def _cached(self, job: Job) -> Any:
        c = self.s.caching
        if c is None or not c.admit(job):
            return None
        hit = await c.lookup_exact(job)
        if hit is None and c.semantic(job):
            hit = await c.lookup_semantic(job, await self._vector(job))
        return hit

    async def _route(self, job: Job) -> Pool:
        if job.target.pool is not None:
            return job.target.pool
        assert self.s.routing is not None, "routing policies need the router"
        pool: Pool = await self.s.routing.decide(job, await self._vector(job))
        return pool

    # -- stage helpers -------------------------------------------------------------------

    def _prepare(self, call: Call, principal: Principal, slot: Slot) -> Job:
        s = self.s
        req: ChatCompletionRequest | CompletionRequest
        if call.endpoint == "chat":
            chat, body = parse_body(call.body, ChatCompletionRequest)
            if len(chat.messages) > s.settings.limits.max_messages:
                raise InvalidRequest(
                    f"Too many messages: {len(chat.messages)} (at most "
                    f"{s.settings.limits.max_messages}).", param="messages")
            prompt_tokens = count_messages(body["messages"])
            req = chat
        else:
            text, body = parse_body(call.body, CompletionRequest)
            prompt_tokens = count_text(text.prompt_text())
            req = text
        target = s.catalog.resolve(req.model, principal)
        ceiling = s.settings.limits.max_tokens_ceiling
        asked = req.output_limit()
        if asked is not None and asked > ceiling:
            raise InvalidRequest(f"max_tokens is too large: {asked} (at most {ceiling}).",
                                 param="max_tokens", code="invalid_value")
        biggest = max(p.config.max_context for p in target.candidates(s.catalog))
        if prompt_tokens >= biggest:
            raise ContextTooLong(
                f"This model's maximum context length is {biggest} tokens; your prompt has about "
                f"{prompt_tokens}.", param="messages")
        max_output = min(asked or ceiling, ceiling, biggest - prompt_tokens) * req.n
        now = datetime.now(UTC)
        record = Record(
            request_id=call.request_id, ts=now, tenant_id=principal.tenant_id,
            team_id=principal.team_id, key_id=principal.key_id, endpoint=call.endpoint,
            requested_model=req.model, end_user=req.user)
        query = req.last_user_text() if isinstance(req, ChatCompletionRequest) \
            else req.prompt_text()
        return Job(call, principal, req, body, target, req.frugate or FrugateControls(),
                   prompt_tokens, max_output, record, slot, query_text=query)

    def _upstream_body(self, job: Job) -> bytes:
        body = job.body
        body.pop("frugate", None)
        assert job.pool is not None
        body["model"] = job.pool.model
        if job.req.stream:
            opts = dict(body.get("stream_options") or {})
            opts["include_usage"] = True  # always: billing needs the usage chunk
            body["stream_options"] = opts
        if job.cascade is not None:
            job.cascade.prepare(body)  # small answers whole, with logprobs
        return orjson.dumps(body)

    # -- relay + settle -------------------------------------------------------------------

    async def _relay_json(self, job: Job, ticket: Any, opened: Opened) -> Response:
        upstream_s = time.perf_counter() - job.dispatched_at
        raw = opened.body
        try:
            payload = orjson.loads(raw)
            usage = payload.get("usage") or {}
        except (orjson.JSONDecodeError, AttributeError):
            payload, usage = None, {}
        rec = job.record
        rec.served_model = payload.get("model") if isinstance(payload, dict) else None
        _take_usage(rec, usage)
        if job.citations is not None and isinstance(payload, dict):
            payload["frugate"] = {"citations": job.citations}
            raw = orjson.dumps(payload)
        self._overhead(job, upstream_s)
        await self._settle(job, ticket)
        if self.s.caching is not None and isinstance(payload, dict):
            self.s.caching.store(job, payload)
        if job.req.stream and isinstance(payload, dict):  # a cascade's accepted answer
            payload.pop("frugate", None)  # citations ride their own chunk there
            return replay_sse(job, payload, self._headers(job, cost=True))
        return JSONBytes(raw, headers=self._headers(job, cost=True))

    def _relay_stream(self, job: Job, ticket: Any, opened: Opened) -> SSEResponse:
        extra = {"citations": job.citations} if job.citations is not None else None
        include_usage = bool(job.req.stream_options and job.req.stream_options.include_usage)
        self._overhead(job, time.perf_counter() - job.dispatched_at)

        async def finish(out: StreamOutcome) -> None:
            rec = job.record
            rec.served_model = out.model
            if out.first_byte_at is not None:
                rec.ttft_ms = (out.first_byte_at - job.call.started) * 1000
            if out.usage is not None:  # the upstream's own count, even if the client left
                _take_usage(rec, out.usage)
            else:  # aborted or broken before usage: bill the prompt plus what was streamed
                prompt, completion = await count_partial(opened.pool, opened.replica, job.body,
                                                         out.text(), job.prompt_tokens)
                rec.prompt_tokens, rec.completion_tokens = prompt, completion
            rec.status = out.status
            rec.error_type = out.error.type if out.error is not None else None
            await self._settle(job, ticket, streamed=True)
            if out.status == "ok" and self.s.caching is not None:
                self.s.caching.store_stream(job, out)

        relay = StreamRelay(opened, include_usage=include_usage,
                            total_timeout_s=opened.pool.config.timeouts.total_s, on_end=finish,
                            extra_final=extra)
        return SSEResponse(relay, headers=self._headers(job))

    async def _serve_hit(self, job: Job, ticket: Any, hit: Any) -> Any:
        rec = job.record
        rec.cache_status = "hit"
        rec.served_model = hit.response.get("model")
        _take_usage(rec, hit.response.get("usage") or {})
        self._overhead(job, 0.0)
        await self._settle(job, ticket)
        assert self.s.caching is not None
        return self.s.caching.respond(job, hit, self._headers(job, cost=True))

    async def _settle(self, job: Job, ticket: Any, error: BaseException | None = None,
                      streamed: bool = False) -> None:
        rec = job.record
        rec.pool = rec.pool or (job.pool.name if job.pool else None)
        rec.latency_ms = (time.perf_counter() - job.call.started) * 1000
        if error is not None:
            if isinstance(error, ClientClosed | asyncio.CancelledError):
                rec.status, rec.error_type = "client_aborted", None
            elif isinstance(error, FrugateError):
                rec.status, rec.error_type = "error", error.type
            else:
                rec.status, rec.error_type = "error", "server_error"
            if isinstance(error, ClientClosed) and job.pool is not None:
                # The upstream saw the prompt (prefill ran) but delivered nothing: bill the
                # prompt, counted by the upstream's own tokenizer.
                rec.prompt_tokens, _ = await count_partial(job.pool, None, job.body, "",
                                                           job.prompt_tokens)
        job.slot.release()
        # Sent now, finished in its own task: the response does not wait for Redis's reply,
        # and a cancelled request still settles. Shutdown waits for every one.
        with job.call.trace.stage("settle"):
            self.s.track_settlement(self.s.meter.start_settle(ticket, rec))
        self.s.metrics.observe(rec, job, streamed=streamed)
        job.call.trace.finish(job)  # the request's span ends, with usage, cost, pool, cache
        # One turn of the loop before answering, as awaiting the settlement used to give.
        # Measured: without it c=64 p99 rose from ~35 ms to 50-190 ms (in-process and Redis
        # admission alike); the mechanism is not pinned down.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)

    def _headers(self, job: Job, *, cost: bool = False) -> dict[str, str]:
        rec = job.record
        h = {"x-frugate-cache": rec.cache_status}
        pool = rec.pool or (job.pool.name if job.pool else None)
        if pool:
            h["x-frugate-route"] = pool
        if rec.route_score is not None:
            h["x-frugate-route-score"] = f"{rec.route_score:.4f}"
        if job.citations:
            h["x-frugate-citations"] = str(len(job.citations))
        if job.overhead_ms is not None:
            h["x-frugate-overhead-ms"] = f"{job.overhead_ms:.3f}"
        if cost:  # known only once settled (not for streams: headers go out first)
            h["x-frugate-cost-usd"] = f"{rec.cost_micros / 1_000_000:.6f}"
        return h

    @staticmethod
    def _overhead(job: Job, upstream_s: float) -> None:
        job.overhead_ms = max(0.0, (time.perf_counter() - job.call.started - upstream_s) * 1000)


_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}


def _take_usage(rec: Record, usage: dict[str, Any]) -> None:
    rec.prompt_tokens, rec.completion_tokens, rec.cached_tokens = usage_counts(usage)
