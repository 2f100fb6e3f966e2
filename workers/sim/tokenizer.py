"""Token counting with a real BPE: tiktoken's cl100k_base, loaded from a local rank file.

Chat prompts are counted after a simple ChatML template (documented in docs/simulator.md):

    <|im_start|>system\n# Tools\n{tools as JSON}<|im_end|>\n          (only when tools are given)
    <|im_start|>{role}\n{content}<|im_end|>\n                         (each message)
    <|im_start|>assistant\n                                           (generation prompt)

An assistant message's tool calls are appended to its content as
`<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>`.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import orjson
import tiktoken
from tiktoken.load import load_tiktoken_bpe

__all__ = ["Tokenizer", "tokenizer_path"]

# cl100k_base's pre-tokenisation pattern, as published with tiktoken.
CL100K_PATTERN: Final = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
ENDOFTEXT: Final = 100257
IM_START: Final = 100264
IM_END: Final = 100265
RANK_FILE: Final = "cl100k_base.tiktoken"


def tokenizer_path(explicit: str | Path | None = None) -> Path:
    """The cl100k_base rank file: `explicit`, else the gateway's vendored copy, else ../shared."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        return path
    root = Path(__file__).resolve().parents[2]
    candidates = (
        root / "gateway" / "assets" / "tiktoken" / RANK_FILE,
        root.parent / "shared" / "tiktoken" / RANK_FILE,
    )
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no {RANK_FILE} in: " + ", ".join(str(p) for p in candidates))


def _content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content-part list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ValueError(f"content part type {kind!r} is not supported by a text model")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise ValueError("message content must be a string or a list of content parts")


class Tokenizer:
    """cl100k_base with the ChatML special tokens, plus the helpers the simulator needs."""

    def __init__(self, path: str | Path | None = None) -> None:
        ranks = load_tiktoken_bpe(str(tokenizer_path(path)))
        self._enc = tiktoken.Encoding(
            name="cl100k_base",
            pat_str=CL100K_PATTERN,
            mergeable_ranks=ranks,
            special_tokens={
                "<|endoftext|>": ENDOFTEXT,
                "<|im_start|>": IM_START,
                "<|im_end|>": IM_END,
            },
        )
        self._role_headers: dict[str, list[int]] = {}
        self._newline = self._enc.encode_ordinary("\n")

    def encode(self, text: str) -> list[int]:
        """Tokens of plain text; special-token look-alikes in user text stay plain text."""
        return self._enc.encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._enc.decode(list(ids), errors="replace")

    def token_strs(self, ids: Sequence[int]) -> list[str]:
        return [b.decode("utf-8", errors="replace") for b in self._enc.decode_tokens_bytes(ids)]

    def pieces(self, text: str) -> list[str]:
        """The text split at token boundaries, one string per token, joining back to `text`.

        A character split across tokens belongs to the token that completes it.
        """
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        ids = self._enc.encode_ordinary(text)
        return [decoder.decode(b) for b in self._enc.decode_tokens_bytes(ids)]

    def chat_prompt_ids(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None = None
    ) -> list[int]:
        """Token ids of `messages` after the ChatML template, with the generation prompt."""
        ids: list[int] = []
        if tools:
            ids += self._header("system")
            ids += self._enc.encode_ordinary("# Tools\n" + orjson.dumps(list(tools)).decode())
            ids.append(IM_END)
            ids += self._newline
        for message in messages:
            ids += self._header(str(message.get("role", "user")))
            text = _content_text(message.get("content"))
            calls = message.get("tool_calls")
            if calls:
                text += "".join(_tool_call_text(call) for call in _as_list(calls))
            if text:
                ids += self._enc.encode_ordinary(text)
            ids.append(IM_END)
            ids += self._newline
        ids += self._header("assistant")
        return ids

    def _header(self, role: str) -> list[int]:
        header = self._role_headers.get(role)
        if header is None:
            header = [IM_START, *self._enc.encode_ordinary(role + "\n")]
            if len(self._role_headers) < 64:
                self._role_headers[role] = header
        return header


def _as_list(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else [value]


def _tool_call_text(call: Any) -> str:
    function = call.get("function", {}) if isinstance(call, dict) else {}
    name = function.get("name", "") if isinstance(function, dict) else ""
    arguments = function.get("arguments", "") if isinstance(function, dict) else ""
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments or "{}"}}}\n</tool_call>'


def message_text(content: Any) -> str:
    """Public wrapper used by the output planner (echo mode)."""
    return _content_text(content)
