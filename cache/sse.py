"""Serving a hit: the cached completion re-stamped for this request, as JSON or as
server-sent events the `openai` SDK parses like a live stream."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

__all__ = ["hit_response", "sse_chunks"]


def hit_response(
    cached: dict[str, Any], model: str | None = None, completion_id: str | None = None
) -> dict[str, Any]:
    """A copy of a cached chat completion with a fresh id and timestamp (and `model`, if given).

    Usage is kept as the original call's, so the caller can price the saving.
    """
    out = dict(cached)
    out["id"] = completion_id or f"chatcmpl-{uuid.uuid4().hex}"
    out["created"] = int(time.time())
    out["object"] = "chat.completion"
    if model is not None:
        out["model"] = model
    return out


def _frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def sse_chunks(
    response: dict[str, Any], include_usage: bool = False, chunk_chars: int = 0
) -> list[bytes]:
    """`data:` frames replaying a chat completion: per choice a role chunk, content
    chunk(s) (split every `chunk_chars` characters; 0 = one chunk), tool calls, a
    finish chunk; then a usage chunk if asked; then `data: [DONE]`."""
    base = {
        "id": response.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": response.get("created") or int(time.time()),
        "model": response.get("model", ""),
    }
    if response.get("system_fingerprint") is not None:
        base["system_fingerprint"] = response["system_fingerprint"]
    frames = []
    for choice in response.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}

        def chunk(delta: dict[str, Any], finish: str | None = None, idx: int = index) -> bytes:
            body = {**base, "choices": [{"index": idx, "delta": delta, "finish_reason": finish}]}
            if include_usage:
                body["usage"] = None
            return _frame(body)

        frames.append(chunk({"role": message.get("role", "assistant"), "content": ""}))
        content = message.get("content")
        if content:
            step = chunk_chars if chunk_chars > 0 else len(content)
            for start in range(0, len(content), step):
                frames.append(chunk({"content": content[start : start + step]}))
        for i, call in enumerate(message.get("tool_calls") or []):
            frames.append(chunk({"tool_calls": [{"index": i, **call}]}))
        if message.get("refusal"):
            frames.append(chunk({"refusal": message["refusal"]}))
        frames.append(chunk({}, choice.get("finish_reason") or "stop"))
    if include_usage and response.get("usage") is not None:
        frames.append(_frame({**base, "choices": [], "usage": response["usage"]}))
    frames.append(b"data: [DONE]\n\n")
    return frames
