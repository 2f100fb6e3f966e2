"""query_window: identity for texts that fit, head + tail pieces (exactly fitting) otherwise."""

from __future__ import annotations

import pytest

from embedder import QueryWindow, query_window
from embedder.window import SEPARATOR, _load_tokenizer

FEW_SHOT_EXAMPLE = (
    "Which of the following statements best explains why magnets usually stick to a "
    "refrigerator door?\nA) The door is smooth.\nB) The door contains iron.\nAnswer:\nB\n\n"
)


@pytest.fixture(scope="module")
def window() -> QueryWindow:
    return QueryWindow()


def pieces(text: str) -> list[str]:
    tokens: list[str] = _load_tokenizer().encode(text, add_special_tokens=False).tokens
    return tokens


def test_texts_that_fit_are_returned_unchanged(window: QueryWindow) -> None:
    short = "How do I reset my password?"
    assert window(short) == short
    assert window("") == ""
    # Long in characters but under 254 pieces: still unchanged.
    fits = "supercalifragilistic " * 40
    assert len(fits) > 254 and len(pieces(fits)) <= 254
    assert window(fits) == fits
    exactly = " ".join(["word"] * 254)
    assert window(exactly) == exactly
    assert window(exactly + " word") != exactly + " word"


def test_long_prompt_keeps_head_and_the_final_question(window: QueryWindow) -> None:
    question = "Ian wanted the bigger house because _ was cold.\nA) Ian\nB) Kyle\nAnswer:"
    text = FEW_SHOT_EXAMPLE * 30 + question
    out = window(text)
    assert out.endswith(question)
    assert out.startswith("Which of the following statements")
    assert SEPARATOR in out
    got, full = pieces(out), pieces(text)
    assert len(got) == window.max_pieces
    # The window tokenizes to the text's own first and last pieces (cuts on word boundaries).
    head, tail = out.split(SEPARATOR)
    assert pieces(head) == full[: len(pieces(head))]
    assert pieces(tail) == full[-len(pieces(tail)) :]
    assert len(pieces(head)) <= window.head


def test_two_prompts_sharing_a_preamble_get_different_windows(window: QueryWindow) -> None:
    a = FEW_SHOT_EXAMPLE * 30 + "What gas do plants absorb?\nAnswer:"
    b = FEW_SHOT_EXAMPLE * 30 + "Which planet is closest to the sun?\nAnswer:"
    assert a[:1000] == b[:1000]
    assert window(a) != window(b)


def test_tail_only_window_and_word_boundaries() -> None:
    tail_only = QueryWindow(head=0)
    # Long words split into several "##" pieces; the cut must not start inside one.
    text = "antidisestablishmentarianism " * 200 + "final question?"
    out = tail_only(text)
    assert SEPARATOR not in out and out.endswith("final question?")
    assert out.startswith("antidisestablishmentarianism")
    assert len(pieces(out)) <= 254
    assert pieces(out) == pieces(text)[-len(pieces(out)) :]


def test_very_long_and_unusual_texts(window: QueryWindow) -> None:
    huge = "x = compute(y) + 1; " * 20_000 + "what does this print?"
    out = window(huge)
    assert out.endswith("what does this print?") and len(pieces(out)) <= 254
    cjk = "漢字" * 400
    assert len(pieces(window(cjk))) <= 254
    no_spaces = "a" * 5000  # one "word" far over the tokenizer's word length limit
    assert len(pieces(window(no_spaces))) <= 254


def test_module_function_uses_the_default_window() -> None:
    text = FEW_SHOT_EXAMPLE * 30 + "Why is the sky blue?"
    assert query_window(text) == QueryWindow()(text)
    assert query_window("short") == "short"


def test_rejects_a_head_that_leaves_no_room() -> None:
    with pytest.raises(ValueError):
        QueryWindow(head=254)
