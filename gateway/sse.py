"""Server-sent events framing, the way OpenAI (and vLLM) frame chat streams."""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
SEP = b"\n\n"


def frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + SEP


class EventSplitter:
    """Cuts a byte stream into complete SSE events (without the blank-line terminator)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r\n" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        events = buf.split(SEP)
        self._buf = events.pop()
        return events

    def rest(self) -> bytes:
        out, self._buf = self._buf, b""
        return out


def data_of(event: bytes) -> bytes | None:
    """The payload of an event's `data:` line(s), or None for comments/other fields."""
    if event.startswith(b"data: ") and b"\ndata:" not in event:
        return event[6:]
    parts = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(parts) if parts else None
