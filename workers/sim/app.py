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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from workers.sim.config import Faults, SimConfig
from workers.sim.engine import Engine, Job
from workers.sim.ledger import Stats, UsageLedger, UsageRecord
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
from workers.sim.tokenizer import Tokenizer

Scope = Mapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
Parser = Callable[[Mapping[str, Any], ParseContext, "str | None"], GenRequest]

JSON: Final = [(b"content-type", b"application/json")]
SSE: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
METRICS_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"
CRASH_DELAY_S: Final = 0.05
SIM_VERSION: Final = "0.0.0+frugate.sim"

logger = logging.getLogger("workers.sim")


class ClientGone(Exception):
    """The client disconnected while the request body was being read."""


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, data: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send_bytes(send, status, orjson.dumps(data), JSON + extra if extra else JSON)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class SimApp:
    """One simulated vLLM server: an engine plus the routes that feed it."""

    def __init__(self, config: SimConfig, tokenizer: Tokenizer | None = None) -> None:
        self.config = config
        self.tokenizer = tokenizer or Tokenizer(config.tokenizer_file)
        self.planner = Planner(self.tokenizer, config.output_tokens)
        self.engine = Engine(config, self.planner)
        self.ctx = ParseContext([config.model], config.max_model_len, self.tokenizer, config.output)
        self.started = int(time.time())
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("POST", "/v1/completions"): self.completions,
            ("GET", "/v1/models"): self.models,
            ("GET", "/health"): self.health,
            ("GET", "/version"): self.version,
            ("GET", "/metrics"): self.metrics,
            ("POST", "/tokenize"): self.tokenize,
            ("POST", "/detokenize"): self.detokenize,
            ("GET", "/sim/faults"): self.get_faults,
            ("POST", "/sim/faults"): self.set_faults,
            ("GET", "/sim/stats"): self.stats,
            ("GET", "/sim/usage"): self.usage,
            ("POST", "/sim/reset"): self.reset,
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

    async def _instant(
        self, job: Job, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]
    ) -> None:
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
                    data = writer.progress()
                    if not started:
                        started = True
                        await send(
                            {"type": "http.response.start", "status": 200, "headers": SSE + extra}
                        )
                        data = writer.start() + data
                    if job.finished:
                        status = "error" if job.error else "completed"
                        engine.record(job, status)
                        await send({"type": "http.response.body", "body": data + writer.end()})
                        return
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

    async def _scheduled(
        self, job: Job, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]
    ) -> None:
        """Timed modes: the engine loop produces tokens; this handler relays them."""
        engine = self.engine
        engine.submit(job)
        watcher = asyncio.get_running_loop().create_task(self._watch(job, receive))
        try:
            if job.req.stream:
                writer = StreamWriter(
                    job, self.config.prompt_tokens_details, self.planner.corpus.words
                )
                await send({"type": "http.response.start", "status": 200, "headers": SSE + extra})
                await send(
                    {"type": "http.response.body", "body": writer.start(), "more_body": True}
                )
                while True:
                    await job.event.wait()
                    job.event.clear()
                    if job.aborted:
                        engine.record(job, "aborted")
                        return
                    data = writer.progress()
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

    async def _send_final(self, job: Job, send: Send, extra: list[tuple[bytes, bytes]]) -> None:
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

    async def _json_body(self, receive: Receive, send: Send) -> dict[str, Any] | None:
        try:
            body = orjson.loads(await read_body(receive) or b"{}")
        except ClientGone:
            return None
        except orjson.JSONDecodeError as exc:
            await send_json(send, 400, error_body(f"JSON decode error: {exc}", 400))
            return None
        if not isinstance(body, dict):
            await send_json(send, 400, error_body("the request body must be a JSON object", 400))
            return None
        return body

    def _check_model(self, body: Mapping[str, Any]) -> None:
        model = body.get("model")
        if model not in (None, "", self.config.model):
            raise ApiError(f"The model `{model}` does not exist.", status=404, param="model")

    async def tokenize(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._json_body(receive, send)
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
        body = await self._json_body(receive, send)
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
        except (KeyError, ValueError) as exc:
            await send_json(send, 400, error_body(f"invalid token id: {exc}", 400, "tokens"))
            return
        await send_json(send, 200, {"prompt": text})

    # -- /sim control routes ---------------------------------------------------------------

    async def get_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        await send_json(send, 200, self.engine.faults.to_dict(loop.time()))

    async def set_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._json_body(receive, send)
        if body is None:
            return
        loop = asyncio.get_running_loop()
        try:
            crash = apply_faults(self.engine.faults, body, loop.time())
        except (TypeError, ValueError) as exc:
            await send_json(send, 400, error_body(str(exc), 400))
            return
        self.engine.wake()
        await send_json(send, 200, self.engine.faults.to_dict(loop.time()))
        if crash:
            logger.warning("crash requested through /sim/faults: exiting")
            loop.call_later(CRASH_DELAY_S, os._exit, 1)

    async def stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        engine = self.engine
        data: dict[str, Any] = engine.stats.to_dict()
        data.update(
            running=engine.num_running,
            waiting=engine.num_waiting,
            kv_cache_usage=engine.kv_usage,
            model=self.config.model,
            profile=self.config.profile,
            pid=os.getpid(),
        )
        await send_json(send, 200, data)

    async def usage(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        limit = int(query.get("limit", ["100"])[0])
        request_id = query.get("id", [None])[0]
        await send_json(send, 200, self.engine.ledger.to_dict(limit, request_id))

    async def reset(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forget stats, usage and faults (Prometheus counters stay monotonic, as in vLLM)."""
        engine = self.engine
        in_flight = engine.stats.in_flight
        engine.stats = Stats(in_flight=in_flight)
        engine.ledger = UsageLedger()
        engine.faults = Faults.from_config(self.config)
        engine.faults.crash_after = None
        engine.wake()
        await send_json(send, 200, {"reset": True})


FAULT_FIELDS: Final = {
    "error_rate": float,
    "error_status": int,
    "midstream_error_rate": float,
    "stall_rate": float,
    "stall_ms": float,
    "stall_after_tokens": int,
    "unhealthy": bool,
}


def apply_faults(faults: Faults, body: Mapping[str, Any], now: float) -> bool:
    """Apply a /sim/faults body; returns True when the caller asked for a crash."""
    if body.get("reset"):
        fresh = Faults()
        for name in FAULT_FIELDS:
            setattr(faults, name, getattr(fresh, name))
        faults.crash_after = None
        faults.freeze_until = 0.0
    for name, kind in FAULT_FIELDS.items():
        if name in body:
            value = body[name]
            if kind is bool:
                setattr(faults, name, bool(value))
            else:
                setattr(faults, name, kind(value))
    for name in ("error_rate", "midstream_error_rate", "stall_rate"):
        if not 0.0 <= getattr(faults, name) <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1")
    if "crash_after" in body:
        value = body["crash_after"]
        faults.crash_after = None if value is None else int(value)
    if "freeze_ms" in body:
        faults.freeze_until = now + float(body["freeze_ms"]) / 1000.0
    return bool(body.get("crash"))
