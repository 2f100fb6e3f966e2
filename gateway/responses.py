"""ASGI responses for the OpenAI surface: pre-encoded JSON and the relayed SSE stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.errors import FrugateError
from gateway.relay import StreamRelay
from gateway.sse import frame

log = logging.getLogger("frugate.relay")


def render_error(err: FrugateError, state: Any = None) -> JSONBytes:
    """An error in OpenAI's shape, with its status and Retry-After; counts refusals."""
    if state is not None and err.status_code in (401, 429, 503):
        state.metrics.rejected.labels(err.type).inc()
    return JSONBytes(err.json(), status_code=err.status_code, headers=err.headers())


def replay_sse(job: Any, body: dict[str, Any], headers: Mapping[str, str]) -> Response:
    """A finished chat completion as a well-formed SSE stream (a cache hit, or a cascade's
    accepted answer, for a client that asked to stream): usage only if the client asked;
    citations ride a final chunk, as on a relayed stream."""
    from cache.sse import sse_chunks  # here: the cache package loads faiss

    opts = job.req.stream_options
    frames = sse_chunks(body, include_usage=bool(opts and opts.include_usage), chunk_chars=64)
    if job.citations is not None:
        frames.insert(len(frames) - 1, frame({
            "id": body.get("id"), "object": "chat.completion.chunk",
            "created": body.get("created", 0), "model": body.get("model"), "choices": [],
            "frugate": {"citations": job.citations}}))
    return Response(b"".join(frames), media_type="text/event-stream",
                    headers={**headers, "cache-control": "no-cache"})


class JSONBytes(Response):
    """JSON that is already encoded (upstream bytes are passed through, not re-serialised)."""

    media_type = "application/json"

    def __init__(self, content: bytes, status_code: int = 200,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(content, status_code=status_code, headers=headers)


class _Transport(Protocol):
    def is_closing(self) -> bool: ...


def client_transport(receive: Receive) -> _Transport | None:
    """The client connection's transport behind uvicorn's `receive`, if that is what it is.

    uvicorn reports a disconnect only when the transport calls connection_lost, and after
    the client's FIN asyncio first tries to flush what is still buffered: measured in front
    of the CPU vLLM, the stream went on for 7 s after the hang-up. The transport is closing
    from the FIN on, so the relay checks that on every chunk.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    # uvloop's transports are not asyncio.BaseTransport subclasses: duck-type it.
    return transport if callable(getattr(transport, "is_closing", None)) else None


class SSEResponse(Response):
    """Streams a relay to the client; a disconnect aborts upstream; settlement always runs."""

    media_type = "text/event-stream"

    def __init__(self, relay: StreamRelay, headers: Mapping[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.relay = relay
        self.extra_headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"),
                   (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        headers += [(k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in self.extra_headers.items()]
        watcher = asyncio.ensure_future(self._watch(receive))
        client = client_transport(receive)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for data in self.relay:
                if client is not None and client.is_closing() and not self.relay.client_gone:
                    await self.relay.client_disconnected()
                    continue
                try:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                except OSError:
                    await self.relay.client_disconnected()
            if not self.relay.client_gone:
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            await self.relay.finish()  # no-op unless the stream ended abnormally

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not self.relay.client_gone:
                    await self.relay.client_disconnected()
                return
