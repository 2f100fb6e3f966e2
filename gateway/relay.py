"""Relaying an upstream vLLM stream to the client, untouched except where it must not be.

Events pass through as bytes. Only three kinds are looked at: the usage chunk (kept for
accounting, dropped if the client did not ask for it), an in-band error (normalised to the
OpenAI error shape) and `[DONE]` (extra frugate fields are sent just before it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from gateway.errors import FrugateError, UpstreamError, UpstreamTimeout
from gateway.sse import DONE, SEP, EventSplitter, data_of, frame
from gateway.upstream.client import Opened, error_fields, redact

# After a half-close the replica stops within a step; the drain only ends early if it never
# does. Generous, because a drain cut short loses tokens the replica already sent (billing).
DRAIN_TIMEOUT_S = 10.0
log = logging.getLogger("frugate.relay")


@dataclass
class StreamOutcome:
    """What happened to a relayed stream: the input of settlement."""

    usage: dict[str, Any] | None = None
    status: str = "ok"  # ok | client_aborted | upstream_error | timeout
    error: FrugateError | None = None
    first_byte_at: float | None = None
    # Raw `data:` payloads of content chunks, kept to count tokens when usage never came.
    payloads: list[bytes] = field(default_factory=list)
    model: str | None = None

    def text(self) -> str:
        """Generated text received so far (all choices, content and tool-call arguments)."""
        out: list[str] = []
        for raw in self.payloads:
            try:
                chunk = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    out.append(delta["content"])
                for call in delta.get("tool_calls") or ():
                    args = (call.get("function") or {}).get("arguments")
                    if args:
                        out.append(args)
                if choice.get("text"):
                    out.append(choice["text"])
        return "".join(out)


class StreamRelay:
    """Turns an opened upstream stream into client-bound SSE bytes, recording the outcome."""

    def __init__(self, opened: Opened, *, include_usage: bool, total_timeout_s: float,
                 on_end: Callable[[StreamOutcome], Awaitable[None]],
                 extra_final: dict[str, Any] | None = None) -> None:
        self.opened = opened
        self.on_end = on_end
        self._ended = False
        self.include_usage = include_usage
        self.extra_final = extra_final
        self.deadline = time.monotonic() + total_timeout_s
        self.outcome = StreamOutcome()
        self._meta: tuple[str, int, str] | None = None  # id, created, model of the stream
        self._timeout: asyncio.Timeout | None = None
        self._expired = False  # the deadline passed: the replica was told to stop
        self._stopping: asyncio.Future[Any] | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        splitter = EventSplitter()
        out = self.outcome
        # At the deadline the replica is told to stop (half-close) and what it already sent is
        # still read, relayed and billed; the hard timeout is for a replica that never stops.
        expire = asyncio.get_running_loop().call_at(_loop_deadline(self.deadline), self._expire)
        hard = _loop_deadline(self.deadline + DRAIN_TIMEOUT_S)
        try:
            async with asyncio.timeout_at(hard) as self._timeout:
                async for chunk in self.opened.chunks():
                    if out.first_byte_at is None:
                        out.first_byte_at = time.monotonic()
                    send = []
                    for event in splitter.feed(chunk):
                        kept = self._inspect(event)
                        if kept is not None:
                            send.append(kept)
                    if send and not self.client_gone:
                        yield b"".join(send)
        except TimeoutError:
            if self.client_gone:
                return
            self._expired = True
        except (httpx.HTTPError, OSError) as exc:
            if self.client_gone:
                return  # a drain ending in a closed connection is the expected end
            if not self._expired:
                out.status = "upstream_error"
                out.error = UpstreamError(f"The upstream stream broke off: {type(exc).__name__}.")
        finally:
            expire.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.opened.aclose())
        if self._expired and out.error is None and out.usage is None:
            out.status, out.error = "timeout", UpstreamTimeout("The upstream stream timed out.")
        # Settle before the client sees the end: a client holding [DONE] is on the ledger.
        await self.finish()
        if self.client_gone:
            out.status = "client_aborted"
            return
        if out.error is not None:
            yield frame(out.error.body()) + DONE
            return
        tail = b""
        if self.extra_final is not None and self._meta is not None:
            sid, created, model = self._meta
            tail = frame({"id": sid, "object": "chat.completion.chunk", "created": created,
                          "model": model, "choices": [], "frugate": self.extra_final})
        yield tail + DONE

    def _inspect(self, event: bytes) -> bytes | None:
        """Return the bytes to forward for one event (None to drop it)."""
        data = data_of(event)
        if data is None:
            return event + SEP  # comments / keep-alives pass through
        if data == b"[DONE]":
            return None  # sent by us at the end, after any extra frames
        out = self.outcome
        if data.startswith(b'{"error"') or (b'"error"' in data[:40] and b'"choices"' not in data):
            with contextlib.suppress(orjson.JSONDecodeError):
                message, param, code = error_fields(orjson.loads(data))
                message = redact(message, self.opened.pool.config.api_key)
                out.status = "upstream_error"
                out.error = UpstreamError(message, param=param, code=code)
                return None
        if b'"usage":{' in data or b'"usage": {' in data:
            chunk = orjson.loads(data)
            usage = chunk.get("usage")
            if usage:
                out.usage = usage
            if not chunk.get("choices"):
                self._remember(chunk)
                return event + SEP if self.include_usage else None
        if self._meta is None:
            with contextlib.suppress(orjson.JSONDecodeError):
                self._remember(orjson.loads(data))
        out.payloads.append(data)
        return event + SEP

    def _remember(self, chunk: dict[str, Any]) -> None:
        if self._meta is None:
            self._meta = (str(chunk.get("id", "")), int(chunk.get("created", 0)),
                          str(chunk.get("model", "")))
            self.outcome.model = self._meta[2]

    @property
    def client_gone(self) -> bool:
        return self.opened.tap.abandoned

    async def finish(self) -> None:
        """Run `on_end` once, whatever path the stream took; never raises, never cancelled."""
        if self._ended:
            return
        self._ended = True
        try:
            await asyncio.shield(self.on_end(self.outcome))
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("settling a stream failed")

    def _expire(self) -> None:
        if self.client_gone or self._expired:
            return
        self._expired = True
        stream = self.opened.tap.stream
        if stream is None or not stream.write_eof():
            self._stopping = asyncio.ensure_future(self.opened.aclose())

    async def client_disconnected(self) -> None:
        """Abort upstream but keep reading until it stops, so billing sees every token."""
        self.outcome.status = "client_aborted"
        self.deadline = min(self.deadline, time.monotonic() + DRAIN_TIMEOUT_S)
        if self._timeout is not None:
            self._timeout.reschedule(_loop_deadline(self.deadline))
        await self.opened.half_close()


def _loop_deadline(deadline: float) -> float:
    """Convert a time.monotonic() deadline to the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
