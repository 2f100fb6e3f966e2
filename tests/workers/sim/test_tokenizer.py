"""Token counting: cl100k_base from a local file, the ChatML template, per-token pieces."""

from __future__ import annotations

import pytest

from workers.sim import Tokenizer, tokenizer_path
from workers.sim.tokenizer import IM_END, IM_START


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


def test_rank_file_is_found_locally() -> None:
    assert tokenizer_path().name == "cl100k_base.tiktoken"
    with pytest.raises(FileNotFoundError):
        tokenizer_path("/nonexistent/cl100k_base.tiktoken")


def test_counts_match_published_cl100k(tokenizer: Tokenizer) -> None:
    assert tokenizer.encode("hello world") == [15339, 1917]
    # Special-token look-alikes in user text are plain text, not control tokens.
    assert IM_START not in tokenizer.encode("<|im_start|>")


def test_chat_template(tokenizer: Tokenizer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    ids = tokenizer.chat_prompt_ids(messages)
    newline = tokenizer.encode("\n")
    expected = [
        *[IM_START, *tokenizer.encode("system\nBe brief."), IM_END, *newline],
        *[IM_START, *tokenizer.encode("user\nHi!"), IM_END, *newline],
        *[IM_START, *tokenizer.encode("assistant\n")],
    ]
    assert ids == expected
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert len(tokenizer.chat_prompt_ids(messages, tools)) > len(ids)
    parts = [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]}
    ]
    assert tokenizer.chat_prompt_ids(parts) == tokenizer.chat_prompt_ids(messages[1:])
    with pytest.raises(ValueError, match="image_url"):
        tokenizer.chat_prompt_ids([{"role": "user", "content": [{"type": "image_url"}]}])


def test_pieces_join_back_even_across_split_characters(tokenizer: Tokenizer) -> None:
    text = "naïve café — 東京 🚀 done"
    pieces = tokenizer.pieces(text)
    assert "".join(pieces) == text
    assert len(pieces) == len(tokenizer.encode(text))
