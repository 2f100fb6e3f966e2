"""Cache keys: the exact key, the semantic filter key and the text that is embedded.

exact  = hash(scope, model, every message, output-affecting params, RAG ids)
filter = hash(scope, model, every message except the last user turn, params, RAG ids)
text   = the last user turn: the only part a semantic hit may differ in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["OUTPUT_PARAMS", "CacheKeys", "Scope", "message_text", "request_keys"]

# Request fields that change what the model returns. Everything else (stream,
# stream_options, user, metadata, frugate controls, ...) is left out of the keys.
OUTPUT_PARAMS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "n",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "reasoning_effort",
    "guided_json",
    "guided_regex",
    "guided_choice",
)


@dataclass(frozen=True, slots=True)
class Scope:
    """Who may see an entry: always one tenant; one team when per-team scoping is on."""

    tenant: str
    team: str | None = None

    def tag(self) -> str:
        return f"{self.tenant}\x1f{self.team or ''}"


@dataclass(frozen=True, slots=True)
class CacheKeys:
    exact: str
    filter: str
    text: str
    scope: Scope
    model: str


def message_text(content: Any) -> str:
    """Text of a message `content`: a string or a list of parts (text parts joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
            else:  # images, audio...: keep them in the key verbatim
                parts.append(orjson.dumps(part, option=orjson.OPT_SORT_KEYS).decode())
        return "\n".join(parts)
    return str(content)


def _normal_text(text: str) -> str:
    return " ".join(text.split())


def _normal_message(message: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "role": message.get("role", ""),
        "content": _normal_text(message_text(message.get("content"))),
    }
    for field in ("name", "tool_calls", "tool_call_id", "function_call"):
        if message.get(field) is not None:
            out[field] = message[field]
    return out


def _last_user_index(messages: Sequence[Mapping[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


def _digest(parts: Mapping[str, Any]) -> str:
    blob = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return hashlib.sha256(blob).hexdigest()


def request_keys(
    request: Mapping[str, Any],
    scope: Scope,
    model: str | None = None,
    rag_ids: Sequence[str] = (),
) -> CacheKeys:
    """Keys of a chat completion request.

    `model` is the pool or alias the request is cached under (default: the request's
    `model`). `rag_ids` names the grounding the answer depends on (collections and
    options: the lookup runs before retrieval, so pass what selects the chunks).
    """
    messages = [_normal_message(m) for m in request.get("messages") or []]
    model = model if model is not None else str(request.get("model", ""))
    params = {p: request[p] for p in OUTPUT_PARAMS if request.get(p) is not None}
    base = {
        "scope": scope.tag(),
        "model": model,
        "params": params,
        "rag": sorted(rag_ids),
    }
    exact = _digest({**base, "messages": messages})
    last = _last_user_index(messages)
    text = messages[last]["content"] if last is not None else ""
    context = [m if i != last else {"role": "user", "slot": True} for i, m in enumerate(messages)]
    return CacheKeys(
        exact=exact,
        filter=_digest({**base, "context": context}),
        text=text,
        scope=scope,
        model=model,
    )
