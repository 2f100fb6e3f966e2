"""The simulator's HTTP surface as a raw ASGI application (no framework on the hot path).

OpenAI routes as vLLM serves them: /v1/chat/completions, /v1/completions, /v1/models,
/tokenize, /detokenize, /health, /version, /metrics. Control routes for tests live under
/sim/: faults, stats, usage, reset.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from workers.sim.asgi import (
    SSE,
    ClientGone,
    Handler,
    Headers,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_bytes,
    send_json,
)
from workers.sim.config import SimConfig
from workers.sim.control import ControlRoutes, json_body
from workers.sim.engine import Engine
from workers.sim.ledger import UsageRecord
from workers.sim.plans import Planner
from workers.sim.protocol import (
    ApiError,
    GenRequest,
    ParseContext,
    error_body,
    parse_chat,
    parse_completion,
)
from workers.sim.responses import StreamWriter, chat_response, completion_response
from workers.sim.sequences import Job
from workers.sim.tokenizer import Tokenizer

Parser = Callable[[Mapping[str, Any], ParseContext, "str | None"], GenRequest]

METRICS_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"
SIM_VERSION: Final = "0.0.0+frugate.sim"

logger = logging.getLogger("workers.sim")


class SimApp:
    """One simulated vLLM server: an engine plus the routes that feed it."""

    def __init__(self, config: SimConfig, tokenizer: Tokenizer | None = None) -> None:
        self.config = config
        self.tokenizer = tokenizer or Tokenizer(config.tokenizer_file)
        self.planner = Planner(self.tokenizer, config.output_tokens)
        self.engine = Engine(config, self.planner)
        self.ctx = ParseContext([config.model], config.max_model_len, self.tokenizer, config.output)
        self.started = int(time.time())
        control = ControlRoutes(self.engine, config)
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("POST", "/v1/completions"): self.completions,
            ("GET", "/v1/models"): self.models,
            ("GET", "/health"): self.health,
            ("GET", "/version"): self.version,
            ("GET", "/metrics"): self.metrics,
            ("POST", "/tokenize"): self.tokenize,
            ("POST", "/detokenize"): self.detokenize,
            ("GET", "/sim/faults"): control.get_faults,
            ("POST", "/sim/faults"): control.set_faults,
            ("GET", "/sim/stats"): control.stats,
            ("GET", "/sim/usage"): control.usage,
            ("POST", "/sim/reset"): control.reset,
            ("GET", "/sim/requests"): control.requests,
        }
        self._paths = {path for _, path in self._routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self._routes.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
            elif scope["path"] in self._paths:
                await send_json(send, 405, {"detail": "Method Not Allowed"})
            else:
                await send_json(send, 404, {"detail": "Not Found"})
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.engine.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.engine.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- generation ------------------------------------------------------------------------

    async def chat_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, parse_chat)

    async def completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, parse_completion)

    async def _generate(self, scope: Scope, receive: Receive, send: Send, parse: Parser) -> None:
        engine = self.engine
        stats = engine.stats
        stats.received += 1
        crash_after = engine.faults.crash_after
        if crash_after is not None and stats.received > crash_after:
            logger.warning("crash_after=%d reached: exiting", crash_after)
            os._exit(1)
        try:
            body = orjson.loads(await read_body(receive))
            if not isinstance(body, dict):
                raise ApiError("the request body must be a JSON object")
            req = parse(body, self.ctx, header(scope, b"x-request-id"))
            engine.recent_bodies.append({"x_request_id": req.x_request_id, "body": body})
        except ClientGone:
            return
        except orjson.JSONDecodeError as exc:
            stats.rejected += 1
            await send_json(send, 400, error_body(f"JSON decode error: {exc}", 400))
            return
        except ApiError as exc:
            stats.rejected += 1
            await send_json(send, exc.status, exc.body())
            return
        extra = [(b"x-request-id", req.x_request_id.encode())] if req.x_request_id else []
        fault = engine.pick_fault(req)
        if fault == "error":
            status = engine.faults.error_status
            engine.ledger.record(
                UsageRecord(req.request_id, req.x_request_id, req.model, "error", 0, 0, [])
            )
            stats.errored += 1
            await send_json(send, status, error_body("Simulated server error.", status), extra)
            return
        loop = asyncio.get_running_loop()
        job = engine.make_job(req, fault, loop.time())
        stats.in_flight += 1
        try:
            if self.config.instant:
                await self._instant(job, receive, send, extra)
            else:
                engine.start()
                await self._scheduled(job, receive, send, extra)
        finally:
            stats.in_flight -= 1

    async def _instant(self, job: Job, receive: Receive, send: Send, extra: Headers) -> None:
        """The `fast` path: no scheduler, each stream written in as few sends as possible."""
        engine = self.engine
        loop = asyncio.get_running_loop()
        frozen = engine.faults.freeze_until - loop.time()
        if frozen > 0:
            await asyncio.sleep(frozen)
        req = job.req
        details = self.config.prompt_tokens_details
        writer = StreamWriter(job, details, self.planner.corpus.words) if req.stream else None
        engine.observe_request(job)
        engine.instant_active += 1
        try:
            started = False
            while True:
                job.stall_wait = None
                engine.advance_instant(job, loop.time(), keep_boundaries=req.stream)
                if writer is not None:
                    if not started:
                        started = True
                        await send(
                            {
                                "type": "http.response.start",
                                "status": 200,
                                "headers": [*SSE, *extra],
                            }
                        )
                    before = [s.sent for s in job.seqs]
                    data = writer.progress()
                    if data and _connection_lost(receive):
                        for s, sent in zip(job.seqs, before, strict=True):
                            s.sent = sent
                        engine.abort(job)
                        engine.record(job, "aborted")
                        return
                    if job.finished:
                        status = "error" if job.error else "completed"
                        engine.record(job, status)
                        await send({"type": "http.response.body", "body": data + writer.end()})
                        return
                    if data:
                        await send({"type": "http.response.body", "body": data, "more_body": True})
                elif job.finished:
                    break
                if job.stall_wait is not None and await self._client_left(receive, job.stall_wait):
                    engine.abort(job)
                    engine.record(job, "aborted")
                    return
        finally:
            engine.instant_active -= 1
        await self._send_final(job, send, extra)

    async def _client_left(self, receive: Receive, stall_ms: float) -> bool:
        """Wait out a stall; True if the client disconnected meanwhile."""
        timeout = stall_ms / 1000.0 if stall_ms else None
        try:
            while True:
                message = await asyncio.wait_for(receive(), timeout)
                if message["type"] == "http.disconnect":
                    return True
        except TimeoutError:
            return False

    async def _scheduled(self, job: Job, receive: Receive, send: Send, extra: Headers) -> None:
        """Timed modes: the engine loop produces tokens; this handler relays them."""
        engine = self.engine
        engine.submit(job)
        watcher = asyncio.get_running_loop().create_task(self._watch(job, receive))
        try:
            if job.req.stream:
                writer = StreamWriter(
                    job, self.config.prompt_tokens_details, self.planner.corpus.words
                )
                # Headers at once, the first chunk with the first token, as vLLM does.
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [*SSE, *extra]}
                )
                while True:
                    await job.event.wait()
                    job.event.clear()
                    if job.aborted:
                        engine.record(job, "aborted")
                        return
                    before = [s.sent for s in job.seqs]
                    data = writer.progress()
                    if data and _connection_lost(receive):
                        # uvicorn would drop these frames silently: they were never sent.
                        for s, sent in zip(job.seqs, before, strict=True):
                            s.sent = sent
                        engine.abort(job)
                        engine.record(job, "aborted")
                        return
                    if job.finished:
                        job.responded = True
                        engine.record(job, "error" if job.error else "completed")
                        await send({"type": "http.response.body", "body": data + writer.end()})
                        return
                    if data:
                        await send({"type": "http.response.body", "body": data, "more_body": True})
            else:
                while not job.finished:
                    await job.event.wait()
                    job.event.clear()
                if job.aborted:
                    engine.record(job, "aborted")
                    return
                await self._send_final(job, send, extra)
        finally:
            watcher.cancel()

    async def _send_final(self, job: Job, send: Send, extra: Headers) -> None:
        job.responded = True
        if job.error is not None:
            self.engine.record(job, "error")
            await send_json(send, 500, error_body(job.error, 500), extra)
            return
        self.engine.record(job, "completed")
        words = self.planner.corpus.words
        details = self.config.prompt_tokens_details
        if job.req.kind == "chat":
            await send_json(send, 200, chat_response(job, details, words), extra)
        else:
            await send_json(send, 200, completion_response(job, details, words), extra)

    async def _watch(self, job: Job, receive: Receive) -> None:
        """Notice a client disconnect (ASGI http.disconnect) and abort the job, as vLLM does."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not job.responded:
                    self.engine.abort(job)
                return

    # -- OpenAI side routes ----------------------------------------------------------------

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = self.config.model
        card = {
            "id": model,
            "object": "model",
            "created": self.started,
            "owned_by": "vllm",
            "root": model,
            "parent": None,
            "max_model_len": self.config.max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{uuid.uuid4().hex}",
                    "object": "model_permission",
                    "created": self.started,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }
        await send_json(send, 200, {"object": "list", "data": [card]})

    async def health(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 503 if self.engine.faults.unhealthy else 200
        await send_bytes(send, status, b"", [])

    async def version(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"version": SIM_VERSION})

    async def metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.engine.render_metrics().encode()
        await send_bytes(send, 200, body, [(b"content-type", METRICS_TYPE)])

    def _check_model(self, body: Mapping[str, Any]) -> None:
        model = body.get("model")
        if model not in (None, "", self.config.model):
            raise ApiError(f"The model `{model}` does not exist.", status=404, param="model")

    async def tokenize(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await json_body(receive, send)
        if body is None:
            return
        try:
            self._check_model(body)
            if "messages" in body:
                messages = body["messages"]
                if not isinstance(messages, list):
                    raise ApiError("messages must be a list", param="messages")
                ids = self.tokenizer.chat_prompt_ids(messages, body.get("tools"))
            elif isinstance(body.get("prompt"), str):
                ids = self.tokenizer.encode(body["prompt"])
            else:
                raise ApiError("either prompt (a string) or messages is required")
        except ValueError as exc:
            await send_json(send, 400, error_body(str(exc), 400, "messages"))
            return
        except ApiError as exc:
            await send_json(send, exc.status, exc.body())
            return
        strs = self.tokenizer.token_strs(ids) if body.get("return_token_strs") else None
        await send_json(
            send,
            200,
            {
                "count": len(ids),
                "max_model_len": self.config.max_model_len,
                "tokens": ids,
                "token_strs": strs,
            },
        )

    async def detokenize(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await json_body(receive, send)
        if body is None:
            return
        tokens = body.get("tokens")
        try:
            self._check_model(body)
            if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
                raise ApiError("tokens must be a list of integers", param="tokens")
            text = self.tokenizer.decode(tokens)
        except ApiError as exc:
            await send_json(send, exc.status, exc.body())
            return
        except (KeyError, OverflowError, ValueError) as exc:
            await send_json(send, 400, error_body(f"invalid token id: {exc}", 400, "tokens"))
            return
        await send_json(send, 200, {"prompt": text})


def _connection_lost(receive: Receive) -> bool:
    """Whether the server already lost the client's connection (uvicorn's own flag).

    uvicorn's send() silently drops frames once the connection is lost; checking first lets
    the usage ledger count exactly the frames that went out. Other servers: assume connected.
    """
    cycle = getattr(receive, "__self__", None)
    # asyncio drops writes once close() has begun (it counts the connection as lost at once),
    # but uvicorn sets `disconnected` only when connection_lost runs, a loop turn later.
    transport = getattr(cycle, "transport", None)
    return bool(getattr(cycle, "disconnected", False)) or bool(
        transport is not None and transport.is_closing())
