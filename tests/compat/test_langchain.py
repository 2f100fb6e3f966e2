"""LangChain's ChatOpenAI and OpenAIEmbeddings, unchanged but for base_url and api_key."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from pydantic import BaseModel, Field

from tests.compat.conftest import need
from tests.gateway.harness import GatewayServer

pytestmark = pytest.mark.compat


class Weather(BaseModel):
    """Weather for a city."""

    city: str = Field(description="The city")


@pytest.fixture
def chat(gateway: GatewayServer, api_key: str) -> Any:
    lc = need("langchain_openai")
    return lc.ChatOpenAI(model="gpt-4o-mini", base_url=gateway.base_url, api_key=api_key,
                         max_tokens=24, max_retries=0, include_response_headers=True)


def test_invoke_usage_and_headers(chat: Any) -> None:
    msg = chat.invoke("Say something about gateways.")
    assert isinstance(msg.content, str) and msg.content
    usage = msg.usage_metadata
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 24
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    meta = msg.response_metadata
    assert meta["model_name"] == "sim-small"
    assert meta["finish_reason"] in ("stop", "length")
    assert meta["headers"]["x-frugate-route"] == "small"
    assert float(meta["headers"]["x-frugate-cost-usd"]) > 0


def test_stream_with_usage(chat: Any) -> None:
    chunks = list(chat.stream("Stream please.", stream_usage=True))
    assert "".join(c.content for c in chunks)
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.usage_metadata["output_tokens"] > 0
    assert total.response_metadata["model_name"] == "sim-small"


def test_batch_and_model_choice(gateway: GatewayServer, api_key: str) -> None:
    lc = need("langchain_openai")
    large = lc.ChatOpenAI(model="large", base_url=gateway.base_url, api_key=api_key,
                          max_tokens=8, max_retries=0)
    out = large.batch(["one", "two", "three"])
    assert len(out) == 3 and all(m.response_metadata["model_name"] == "sim-large" for m in out)


async def test_async_invoke_and_stream(gateway: GatewayServer, api_key: str) -> None:
    lc = need("langchain_openai")
    # Our own HTTP client, closed here: LangChain's default one is cached for the process.
    async with openai.DefaultAsyncHttpxClient() as http:
        chat = lc.ChatOpenAI(model="gpt-4o-mini", base_url=gateway.base_url, api_key=api_key,
                             max_tokens=24, max_retries=0, http_async_client=http)
        msg = await chat.ainvoke("Async hello.")
        assert msg.content and msg.usage_metadata["output_tokens"] > 0
        parts = [c.content async for c in chat.astream("Async stream.")]
        assert "".join(parts)


def test_tool_calls(chat: Any) -> None:
    msg = chat.bind_tools([Weather]).invoke("Weather in Paris?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "Weather"
    assert isinstance(msg.tool_calls[0]["args"]["city"], str)
    # Streamed tool calls assemble into the same shape.
    chunks = list(chat.bind_tools([Weather], tool_choice="Weather").stream("Weather in Oslo?"))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.tool_calls[0]["name"] == "Weather"
    assert isinstance(total.tool_calls[0]["args"]["city"], str)


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_structured_output(chat: Any, method: str) -> None:
    out = chat.with_structured_output(Weather, method=method).invoke("Weather in Rome?")
    assert isinstance(out, Weather) and out.city


def test_embeddings(gateway: GatewayServer, api_key: str) -> None:
    lc = need("langchain_openai")
    # check_embedding_ctx_length=False: send text, not tiktoken ids (the bundled model reads
    # text; OpenAIEmbeddings' default is to pre-tokenise with an OpenAI tokenizer).
    emb = lc.OpenAIEmbeddings(model="all-MiniLM-L6-v2", base_url=gateway.base_url,
                              api_key=api_key, check_embedding_ctx_length=False, max_retries=0)
    docs = emb.embed_documents(["a cat", "a dog"])
    assert len(docs) == 2 and len(docs[0]) == 384
    query = emb.embed_query("a cat")
    assert query == pytest.approx(docs[0], abs=1e-6)
