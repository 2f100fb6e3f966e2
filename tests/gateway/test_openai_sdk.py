"""The official openai SDK, unchanged but for base_url, against the gateway over the simulator."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from tests.gateway.harness import GatewayServer

MSG = [{"role": "user", "content": "Tell me about gateways."}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


@pytest.fixture
def client(gateway: GatewayServer, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key=api_key, max_retries=0) as c:
        yield c


def test_chat_non_stream(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="small", messages=MSG,
                                                           max_tokens=12)
    r = raw.parse()
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.usage is not None and r.usage.completion_tokens <= 12
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert raw.headers["x-frugate-route"] == "small"
    assert raw.headers["x-frugate-request-id"].startswith("req_")
    assert float(raw.headers["x-frugate-cost-usd"]) > 0
    assert float(raw.headers["x-frugate-overhead-ms"]) >= 0


def test_alias_goes_to_its_pool(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG,
                                                           max_tokens=4)
    assert raw.headers["x-frugate-route"] == "large"
    assert raw.parse().model == "sim-large"


def test_chat_stream_with_and_without_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model="small", messages=MSG, max_tokens=20, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens > 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and
                c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])

    # The gateway always asks upstream for usage; a client that did not ask must not see it.
    plain = list(client.chat.completions.create(model="small", messages=MSG, max_tokens=20,
                                                stream=True))
    assert plain and all(c.usage is None for c in plain)
    assert all(c.choices for c in plain)


def test_stream_usage_matches_non_stream_for_same_seed(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model="small", messages=MSG, max_tokens=30, seed=7)
    chunks = list(client.chat.completions.create(
        model="small", messages=MSG, max_tokens=30, seed=7, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next(c.usage for c in chunks if c.usage is not None)
    assert text == full.choices[0].message.content
    assert usage.completion_tokens == full.usage.completion_tokens  # type: ignore[union-attr]


def test_tools_non_stream_and_stream(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="small", messages=MSG, tools=TOOLS,  # type: ignore[arg-type]
                                       tool_choice="auto", max_tokens=40)
    call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    json.loads(call.function.arguments)

    chunks = list(client.chat.completions.create(model="small", messages=MSG, tools=TOOLS,  # type: ignore[arg-type]
                                                 max_tokens=40, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
    args = "".join(d.function.arguments or "" for d in deltas if d.function)
    json.loads(args)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and
            c.choices[0].finish_reason] == ["tool_calls"]


def test_n_logprobs_stop_response_format_user(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="small", messages=MSG, n=3, max_tokens=8,
                                       logprobs=True, top_logprobs=2, user="end-user-1")
    assert len(r.choices) == 3
    lp = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert lp and lp[0].top_logprobs and len(lp[0].top_logprobs) == 2
    j = client.chat.completions.create(model="small", messages=MSG, max_tokens=60,
                                       response_format={"type": "json_object"})
    json.loads(j.choices[0].message.content or "")
    full = client.chat.completions.create(model="small", messages=MSG, max_tokens=40, seed=3)
    words = (full.choices[0].message.content or "").split()
    assert len(words) > 3
    cut = client.chat.completions.create(model="small", messages=MSG, max_tokens=40, seed=3,
                                         stop=[words[2]])
    assert words[2] not in (cut.choices[0].message.content or "")


def test_legacy_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model="small", prompt="Once upon a time", max_tokens=10)
    assert r.choices[0].text and r.usage and r.usage.completion_tokens <= 10
    chunks = list(client.completions.create(model="small", prompt="Once", max_tokens=10,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices)


def test_models_and_embeddings(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list().data}
    assert {"small", "large", "gpt-4o", "gpt-4o-mini", "all-MiniLM-L6-v2"} <= ids
    e = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat", "a dog"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 384
    b64 = client.embeddings.create(model="all-MiniLM-L6-v2", input="a cat",
                                   encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(b64.data[0].embedding), dtype="<f4")  # type: ignore[arg-type]
    assert np.allclose(decoded, e.data[0].embedding, atol=1e-6)


async def test_async_client_stream_and_not(gateway: GatewayServer, api_key: str) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=api_key,
                                  max_retries=0) as aclient:
        await _async_checks(aclient)


async def _async_checks(aclient: openai.AsyncOpenAI) -> None:
    r = await aclient.chat.completions.create(model="large", messages=MSG, max_tokens=5)
    assert r.choices[0].message.content
    stream = await aclient.chat.completions.create(model="large", messages=MSG, max_tokens=15,
                                                   stream=True,
                                                   stream_options={"include_usage": True})
    seen_usage = None
    async for c in stream:
        if c.usage is not None:
            seen_usage = c.usage
    assert seen_usage is not None and seen_usage.completion_tokens > 0


@pytest.mark.parametrize("kwargs,exc,status", [
    ({"model": "no-such-model"}, openai.NotFoundError, 404),
    ({"messages": []}, openai.BadRequestError, 400),
    ({"temperature": 9}, openai.BadRequestError, 400),
    ({"max_tokens": 0}, openai.BadRequestError, 400),
    ({"n": 0}, openai.BadRequestError, 400),
    ({"max_tokens": 10_000_000}, openai.BadRequestError, 400),
])
def test_request_errors(client: openai.OpenAI, kwargs: dict[str, object],
                        exc: type[openai.APIStatusError], status: int) -> None:
    args: dict[str, object] = {"model": "small", "messages": MSG, **kwargs}
    with pytest.raises(exc) as info:
        client.chat.completions.create(**args)  # type: ignore[call-overload]
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict) and set(body) >= {"message", "type", "param", "code"}


def test_context_overflow_is_a_400(client: openai.OpenAI) -> None:
    huge = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="small", messages=huge)  # type: ignore[arg-type]
    assert info.value.code == "context_length_exceeded"


def test_bad_key_is_401(gateway: GatewayServer) -> None:
    with openai.OpenAI(base_url=gateway.base_url, api_key="fk-not-a-real-key",
                       max_retries=0) as c, pytest.raises(openai.AuthenticationError) as info:
        c.chat.completions.create(model="small", messages=MSG)  # type: ignore[arg-type]
    assert "fk-not-a-real-key" not in str(info.value)
