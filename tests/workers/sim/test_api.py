"""The OpenAI surface, through the official openai SDK and raw HTTP, against a fast simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from workers.sim import SimServer

MESSAGES: list[Any] = [{"role": "user", "content": "Tell me about the sea."}]
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def client(sim: SimServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.base_url, api_key="unused", max_retries=0) as c:
        yield c


def sse_events(sim: SimServer, path: str, body: dict[str, Any]) -> list[str]:
    with httpx.Client(timeout=10) as http:
        response = http.post(sim.url + path, json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = response.text.split("\n\n")
    assert frames[-1] == ""
    assert all(f.startswith("data: ") for f in frames[:-1])
    return [f[len("data: ") :] for f in frames[:-1]]


def test_chat_completion_shape_and_usage(client: openai.OpenAI, sim: SimServer) -> None:
    result = client.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=40)
    assert result.id.startswith("chatcmpl-")
    assert result.object == "chat.completion"
    assert result.model == "sim-model"
    choice = result.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = result.usage
    assert usage is not None
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 1 <= usage.completion_tokens <= 40
    counted = httpx.post(sim.url + "/tokenize", json={"model": "sim-model", "messages": MESSAGES})
    assert counted.json()["count"] == usage.prompt_tokens


def test_max_tokens_cuts_with_length(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="sim-model",
        messages=MESSAGES,
        max_completion_tokens=7,
        extra_body={"ignore_eos": True},
    )
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens == 7


def test_streaming_matches_non_streaming_for_a_seed(client: openai.OpenAI) -> None:
    args: dict[str, Any] = {"model": "sim-model", "messages": MESSAGES, "seed": 42}
    whole = client.chat.completions.create(**args)
    chunks = list(
        client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert len({c.id for c in chunks}) == 1


def test_seed_makes_lorem_output_deterministic(client: openai.OpenAI) -> None:
    def text(seed: int) -> str | None:
        r = client.chat.completions.create(model="sim-model", messages=MESSAGES, seed=seed)
        return r.choices[0].message.content

    assert text(1) == text(1)
    assert text(1) != text(2)


def test_sse_framing_and_usage_only_when_asked(sim: SimServer) -> None:
    body: dict[str, Any] = {"model": "sim-model", "messages": MESSAGES, "stream": True}
    plain = sse_events(sim, "/v1/chat/completions", body)
    assert plain[-1] == "[DONE]"
    assert all("usage" not in json.loads(e) for e in plain[:-1])
    first = json.loads(plain[0])["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": ""}
    with_usage = sse_events(
        sim, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}}
    )
    last = json.loads(with_usage[-2])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] > 0


def test_speculative_steps_stream_several_tokens_per_chunk(spec_sim: SimServer) -> None:
    body = {
        "model": "sim-model",
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": 200,
        "ignore_eos": True,
        "logprobs": True,
    }
    events = [json.loads(e) for e in sse_events(spec_sim, "/v1/chat/completions", body)[:-1]]
    per_chunk = [len(e["choices"][0]["logprobs"]["content"]) for e in events[1:]]
    assert sum(per_chunk) == 200
    assert max(per_chunk) > 1
    # k=4, alpha=0.6: (1 - 0.6**5) / 0.4 = 2.3 tokens per step on average.
    assert 1.8 < sum(per_chunk) / len(per_chunk) < 2.8


def test_prompt_tokens_details_report_prefix_cache_hits(spec_sim: SimServer) -> None:
    body = {
        "model": "sim-model",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": "A shared preamble. " * 40}],
    }
    first = httpx.post(spec_sim.url + "/v1/chat/completions", json=body).json()["usage"]
    again = httpx.post(spec_sim.url + "/v1/chat/completions", json=body).json()["usage"]
    cached = again["prompt_tokens_details"]["cached_tokens"]
    assert cached > first["prompt_tokens_details"]["cached_tokens"]
    # Full 16-token blocks are reused; the rest of the prompt is computed again.
    assert again["prompt_tokens"] - 16 < cached < again["prompt_tokens"]


def test_continuous_usage_stats(sim: SimServer) -> None:
    options = {"include_usage": True, "continuous_usage_stats": True}
    events = sse_events(
        sim,
        "/v1/chat/completions",
        {
            "model": "sim-model",
            "messages": MESSAGES,
            "stream": True,
            "max_tokens": 20,
            "ignore_eos": True,
            "stream_options": options,
        },
    )
    usages = [json.loads(e)["usage"] for e in events[:-1]]
    assert usages[0]["completion_tokens"] == 0
    completions = [u["completion_tokens"] for u in usages]
    assert completions == sorted(completions) and completions[-1] == 20


def test_n_choices(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(model="sim-model", messages=MESSAGES, n=3, seed=9)
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert len({c.message.content for c in result.choices}) == 3
    stream = client.chat.completions.create(model="sim-model", messages=MESSAGES, n=3, stream=True)
    seen: dict[int, str] = {}
    for chunk in stream:
        for choice in chunk.choices:
            seen[choice.index] = seen.get(choice.index, "") + (choice.delta.content or "")
    assert sorted(seen) == [0, 1, 2] and all(seen.values())


def test_chat_logprobs(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="sim-model", messages=MESSAGES, logprobs=True, top_logprobs=3, max_tokens=12
    )
    content = result.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and result.usage is not None
    assert len(content) == result.usage.completion_tokens
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)
    visible = "".join(t.token for t in content)
    assert visible == result.choices[0].message.content


def test_tool_call_non_streaming(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="sim-model",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.id.startswith("chatcmpl-tool-") and call.type == "function"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert isinstance(arguments["city"], str) and 1 <= arguments["days"] <= 7
    assert arguments["unit"] == "celsius"


def test_tool_call_streaming_deltas(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="sim-model",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    deltas = [c.choices[0] for c in stream if c.choices]
    calls = [d.delta.tool_calls[0] for d in deltas if d.delta.tool_calls]
    assert calls[0].id and calls[0].function and calls[0].function.name == "get_weather"
    assert len(calls) > 2  # the name, then argument fragments
    arguments = "".join((c.function.arguments or "") for c in calls if c.function)
    assert json.loads(arguments)["city"]
    assert deltas[-1].finish_reason == "tool_calls"


def test_tool_choice_none_and_tool_results_give_text(client: openai.OpenAI) -> None:
    none = client.chat.completions.create(
        model="sim-model",
        messages=MESSAGES,
        tools=[WEATHER_TOOL],
        tool_choice="none",  # type: ignore[list-item]
    )
    assert none.choices[0].finish_reason != "tool_calls" and none.choices[0].message.content
    after = client.chat.completions.create(
        model="sim-model",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    assert after.choices[0].message.content and not after.choices[0].message.tool_calls


def test_json_object_response_format(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="sim-model", messages=MESSAGES, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(result.choices[0].message.content or ""), dict)
    schema = {
        "type": "object",
        "properties": {
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    typed = client.chat.completions.create(
        model="sim-model",
        messages=MESSAGES,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    )
    value = json.loads(typed.choices[0].message.content or "")
    assert isinstance(value["score"], float) and isinstance(value["tags"], list)


def test_stop_strings(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="sim-model", messages=MESSAGES, stop=["."], max_tokens=200, seed=4
    )
    choice = result.choices[0]
    assert choice.finish_reason == "stop" and "." not in (choice.message.content or "")
    assert choice.model_extra is not None and choice.model_extra["stop_reason"] == "."


def test_echo_output_mode(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(
        model="sim-model",
        messages=[{"role": "user", "content": "Echo me, exactly — ünïcode too."}],
        extra_body={"sim": {"output": "echo"}},
    )
    assert result.choices[0].message.content == "Echo me, exactly — ünïcode too."
    assert result.choices[0].finish_reason == "stop"


def test_completions_endpoint(client: openai.OpenAI) -> None:
    result = client.completions.create(
        model="sim-model", prompt=["Once upon a time", "In a galaxy"], max_tokens=5, logprobs=2
    )
    assert result.object == "text_completion" and result.id.startswith("cmpl-")
    assert [c.index for c in result.choices] == [0, 1]
    assert result.usage is not None and result.usage.completion_tokens == 10
    assert result.choices[0].logprobs is not None
    assert len(result.choices[0].logprobs.tokens or []) == 5
    echoed = client.completions.create(model="sim-model", prompt="Say", max_tokens=3, echo=True)
    assert echoed.choices[0].text.startswith("Say")
    stream = client.completions.create(
        model="sim-model",
        prompt="Hi",
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_models_lists_max_model_len(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["sim-model"]
    assert models[0].model_extra is not None and models[0].model_extra["max_model_len"] == 8192


def test_tokenize_and_detokenize(sim: SimServer) -> None:
    with httpx.Client(base_url=sim.url) as http:
        tokens = http.post("/tokenize", json={"model": "sim-model", "prompt": "hello world"}).json()
        assert tokens == {
            "count": 2,
            "max_model_len": 8192,
            "tokens": [15339, 1917],
            "token_strs": None,
        }
        text = http.post("/detokenize", json={"model": "sim-model", "tokens": tokens["tokens"]})
        assert text.json() == {"prompt": "hello world"}


def test_health_and_version(sim: SimServer) -> None:
    assert httpx.get(sim.url + "/health").status_code == 200
    assert "version" in httpx.get(sim.url + "/version").json()


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["message"] == "The model `nope` does not exist."
    assert error["type"] == "NotFoundError" and error["code"] == 404


def test_context_overflow_is_400_like_vllm(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=9000)
    assert "maximum context length is 8192 tokens" in caught.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "word " * 9000}]
        )


def test_bad_requests_use_the_error_object(sim: SimServer) -> None:
    with httpx.Client(base_url=sim.url) as http:
        broken = http.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert broken.status_code == 400
        assert set(broken.json()["error"]) == {"message", "type", "param", "code"}
        no_messages = http.post("/v1/chat/completions", json={"model": "sim-model"})
        assert no_messages.status_code == 400
        assert no_messages.json()["error"]["type"] == "BadRequestError"
        options = http.post(
            "/v1/chat/completions",
            json={
                "model": "sim-model",
                "messages": MESSAGES,
                "stream_options": {"include_usage": True},
            },
        )
        assert options.status_code == 400
        assert http.get("/nowhere").status_code == 404


def test_x_request_id_names_the_response_and_the_usage_record(sim: SimServer) -> None:
    response = httpx.post(
        sim.url + "/v1/chat/completions",
        json={"model": "sim-model", "messages": MESSAGES, "max_tokens": 5},
        headers={"x-request-id": "req-abc-123"},
    )
    assert response.json()["id"] == "chatcmpl-req-abc-123"
    assert response.headers["x-request-id"] == "req-abc-123"
    record = sim.usage(request_id="req-abc-123")["recent"][0]
    assert record["status"] == "completed"
    assert record["completion_tokens"] == response.json()["usage"]["completion_tokens"]
