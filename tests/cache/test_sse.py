from __future__ import annotations

import httpx
import openai

from cache import hit_response, sse_chunks
from tests.cache.conftest import completion


def _client(frames: list[bytes], body: dict[str, object] | None = None) -> openai.OpenAI:
    def handler(request: httpx.Request) -> httpx.Response:
        if body is not None:
            return httpx.Response(200, json=body)
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"".join(frames)
        )

    return openai.OpenAI(
        api_key="fk-test",
        base_url="http://frugate.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def test_replayed_stream_parses_with_openai_sdk() -> None:
    cached = hit_response(completion("Paris is the capital of France."), model="small")
    frames = sse_chunks(cached, include_usage=True, chunk_chars=8)
    client = _client(frames)
    stream = client.chat.completions.create(
        model="small",
        messages=[{"role": "user", "content": "capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris is the capital of France."
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12
    assert all(c.id == cached["id"] for c in chunks)
    assert frames[-1] == b"data: [DONE]\n\n"


def test_stream_without_usage_has_no_usage_chunk() -> None:
    frames = sse_chunks(completion("ok"))
    chunks = list(
        _client(frames).chat.completions.create(
            model="small", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "ok"


def test_tool_call_replay() -> None:
    response = completion("")
    response["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "x"}'},
            }
        ],
    }
    response["choices"][0]["finish_reason"] = "tool_calls"
    chunks = list(
        _client(sse_chunks(response)).chat.completions.create(
            model="small", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function is not None and calls[0].function.name == "lookup"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_hit_response_is_a_fresh_completion_for_the_sdk() -> None:
    cached = completion("hello")
    fresh = hit_response(cached, model="alias")
    assert fresh["id"] != cached["id"] and fresh["model"] == "alias"
    assert cached["model"] == "small"  # the stored copy is untouched
    out = _client([], body=fresh).chat.completions.create(
        model="alias", messages=[{"role": "user", "content": "x"}]
    )
    assert out.choices[0].message.content == "hello"
