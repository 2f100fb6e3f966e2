from __future__ import annotations

from cache import Scope, request_keys
from tests.cache.conftest import chat

ACME = Scope("acme")


def test_exact_key_ignores_whitespace_and_transport_fields() -> None:
    a = request_keys(chat("What is  the capital of France?"), ACME)
    b = request_keys(
        chat(
            " What is the capital of France? ",
            stream=True,
            user="u1",
            stream_options={"include_usage": True},
            frugate={"cache": "no-store"},
        ),
        ACME,
    )
    assert a.exact == b.exact
    assert a.filter == b.filter
    assert a.text == "What is the capital of France?"


def test_output_params_change_both_keys() -> None:
    base = request_keys(chat("hi", temperature=0), ACME)
    for params in (
        {"temperature": 0.5},
        {"max_tokens": 5},
        {"seed": 3},
        {"stop": ["x"]},
        {"response_format": {"type": "json_object"}},
    ):
        other = request_keys(chat("hi", **params), ACME)
        assert other.exact != base.exact
        assert other.filter != base.filter


def test_scope_model_and_rag_ids_separate_keys() -> None:
    base = request_keys(chat("hi"), ACME)
    for other in (
        request_keys(chat("hi"), Scope("globex")),
        request_keys(chat("hi"), Scope("acme", "team-a")),
        request_keys(chat("hi"), ACME, model="large"),
        request_keys(chat("hi"), ACME, rag_ids=["docs"]),
    ):
        assert other.exact != base.exact
        assert other.filter != base.filter


def test_filter_covers_context_but_not_last_user_turn() -> None:
    def conv(system: str, last: str) -> dict[str, object]:
        return {
            "model": "small",
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "answer"},
                {"role": "user", "content": last},
            ],
        }

    a = request_keys(conv("be brief", "how tall is it?"), ACME)
    b = request_keys(conv("be brief", "what is its height?"), ACME)
    c = request_keys(conv("be verbose", "how tall is it?"), ACME)
    assert a.filter == b.filter and a.exact != b.exact
    assert a.filter != c.filter
    assert b.text == "what is its height?"


def test_content_parts_are_text() -> None:
    parts = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "world"}],
            }
        ],
    }
    assert request_keys(parts, ACME).text == "hello world"
