"""Token counting with tiktoken's BPE files, vendored in `gateway/assets/tiktoken`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken.load import load_tiktoken_bpe

ASSETS = Path(__file__).resolve().parent / "assets" / "tiktoken"
_PATTERNS = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
_SPECIAL = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
# Per-message overhead of the ChatML-style template OpenAI documents for its chat models.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@cache
def encoding(name: str = "cl100k_base") -> tiktoken.Encoding:
    ranks = load_tiktoken_bpe(str(ASSETS / f"{name}.tiktoken"))
    return tiktoken.Encoding(
        name=name, pat_str=_PATTERNS[name], mergeable_ranks=ranks, special_tokens=_SPECIAL[name]
    )


def count_text(text: str, enc: tiktoken.Encoding | None = None) -> int:
    enc = enc or encoding()
    return len(enc.encode_ordinary(text))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: count the text parts
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(str(p.get("text", "")) for p in parts)
    return ""


def count_messages(messages: list[dict[str, Any]], enc: tiktoken.Encoding | None = None) -> int:
    """Prompt tokens of a chat request, the way OpenAI's cookbook estimates them."""
    enc = enc or encoding()
    total = TOKENS_PER_REPLY
    for m in messages:
        total += TOKENS_PER_MESSAGE
        total += len(enc.encode_ordinary(_content_text(m.get("content"))))
        if m.get("name"):
            total += 1
        calls = m.get("tool_calls")
        if calls:
            total += len(enc.encode_ordinary(str(calls)))
    return total
