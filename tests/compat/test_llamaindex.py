"""LlamaIndex's OpenAI-compatible LLM (`llama-index-llms-openai-like`), unchanged but for
api_base and api_key: chat and completion models, streaming, async and tool calls."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.compat.conftest import need
from tests.gateway.harness import GatewayServer

pytestmark = pytest.mark.compat


def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


def make_llm(gateway: GatewayServer, api_key: str, **kwargs: Any) -> Any:
    like = need("llama_index.llms.openai_like")
    opts: dict[str, Any] = {"model": "small", "api_base": gateway.base_url, "api_key": api_key,
                            "max_tokens": 24, "max_retries": 0, "context_window": 4096,
                            "is_chat_model": True, **kwargs}
    return like.OpenAILike(**opts)


def user(text: str) -> list[Any]:
    core = need("llama_index.core.llms")
    return [core.ChatMessage(role="user", content=text)]


def test_chat_and_usage(gateway: GatewayServer, api_key: str) -> None:
    llm = make_llm(gateway, api_key)
    r = llm.chat(user("Hello there."))
    assert r.message.content
    assert r.raw.model == "sim-small"
    assert r.raw.usage.prompt_tokens > 0 and 0 < r.raw.usage.completion_tokens <= 24
    # complete() on a chat model goes through /v1/chat/completions.
    assert llm.complete("Once upon a time").text


def test_completion_model(gateway: GatewayServer, api_key: str) -> None:
    llm = make_llm(gateway, api_key, model="large", is_chat_model=False)
    r = llm.complete("Once upon a time")  # /v1/completions
    assert r.text and r.raw.model == "sim-large"
    assert "".join(c.delta for c in llm.stream_complete("Once") if c.delta)


def test_stream_chat(gateway: GatewayServer, api_key: str) -> None:
    llm = make_llm(gateway, api_key)
    chunks = list(llm.stream_chat(user("Stream please.")))
    assert "".join(c.delta or "" for c in chunks)
    assert chunks[-1].message.content == "".join(c.delta or "" for c in chunks)


async def test_async(gateway: GatewayServer, api_key: str) -> None:
    # Our own async client, closed here: LlamaIndex never closes the one it would make.
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=api_key,
                                  max_retries=0) as client:
        llm = make_llm(gateway, api_key, async_openai_client=client)
        r = await llm.achat(user("Async hello."))
        assert r.message.content
        text = ""
        async for c in await llm.astream_chat(user("Async stream.")):
            text += c.delta or ""
        assert text
        assert (await llm.acomplete("Async once")).text


def test_tool_calls(gateway: GatewayServer, api_key: str) -> None:
    tools = need("llama_index.core.tools")
    llm = make_llm(gateway, api_key, is_function_calling_model=True, max_tokens=60)
    tool = tools.FunctionTool.from_defaults(fn=get_weather)
    r = llm.chat_with_tools([tool], user_msg="Weather in Paris?")
    calls = llm.get_tool_calls_from_response(r, error_on_no_tool_call=True)
    assert calls[0].tool_name == "get_weather" and isinstance(calls[0].tool_kwargs["city"], str)
    # The agent-style helper runs the tool with the arguments the model produced.
    out = llm.predict_and_call([tool], user_msg="Weather in Oslo?")
    assert str(out).startswith("sunny in ")


def test_frugate_controls_ride_in_extra_body(gateway: GatewayServer, api_key: str) -> None:
    llm = make_llm(gateway, api_key,
                   additional_kwargs={"extra_body": {"frugate": {"cache": "no-store"}}})
    assert llm.chat(user("No caching for this one.")).message.content
