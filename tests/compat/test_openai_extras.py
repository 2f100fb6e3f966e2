"""The official openai SDK beyond plain calls (tests/gateway/test_openai_sdk.py has those):
raw and streaming responses with frugate's headers, per-request controls in `extra_body`,
frugate's own endpoints through the SDK's generic methods, and errors as the SDK's types."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.admin_support import MASTER, admin_client, new_key, ok
from tests.gateway.harness import GatewayServer

pytestmark = pytest.mark.compat

MSG = [{"role": "user", "content": "Which pool answers me?"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


@pytest.fixture
def client(gateway: GatewayServer, api_key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url, api_key=api_key, max_retries=0) as c:
        yield c


def test_raw_response_headers(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG, max_tokens=8)  # type: ignore[arg-type]
    assert raw.http_response.status_code == 200
    h = raw.headers
    assert h["x-frugate-route"] == "small"
    assert h["x-frugate-cache"] in ("miss", "bypass")
    assert h["x-frugate-request-id"].startswith("req_")
    assert float(h["x-frugate-cost-usd"]) > 0 and float(h["x-frugate-overhead-ms"]) >= 0
    completion = raw.parse()
    assert completion.model == "sim-small" and completion.usage is not None
    assert raw.request_id is None or isinstance(raw.request_id, str)


def test_streaming_response_headers_come_first(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
            model="large", messages=MSG, max_tokens=16, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True}) as resp:
        # Known before the body: the route and the request id (the cost is not, for streams).
        assert resp.headers["x-frugate-route"] == "large"
        assert resp.headers["x-frugate-request-id"].startswith("req_")
        assert "x-frugate-cost-usd" not in resp.headers
        assert resp.headers["content-type"].startswith("text/event-stream")
        chunks = list(resp.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_other_endpoints_raw(client: openai.OpenAI) -> None:
    comp = client.completions.with_raw_response.create(model="small", prompt="Once",
                                                       max_tokens=5)
    assert comp.headers["x-frugate-route"] == "small" and comp.parse().choices[0].text
    emb = client.embeddings.with_raw_response.create(model="all-MiniLM-L6-v2", input="a cat")
    assert emb.headers["x-frugate-route"] == "local-embeddings"
    assert len(emb.parse().data[0].embedding) == 384
    models = client.models.with_raw_response.list()
    assert models.headers["x-frugate-request-id"].startswith("req_")
    assert "small" in {m.id for m in models.parse().data}


def test_extra_body_and_headers_pass_through(client: openai.OpenAI) -> None:
    # frugate's own controls and vLLM sampling fields ride in extra_body, untouched by the SDK.
    r = client.chat.completions.with_raw_response.create(
        model="small", messages=MSG, max_tokens=6,  # type: ignore[arg-type]
        extra_body={"frugate": {"cache": "no-store"}, "top_k": 5, "repetition_penalty": 1.1},
        extra_headers={"x-client-trace": "abc"})
    assert r.http_response.status_code == 200 and r.parse().choices[0].message.content
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="small", messages=MSG,  # type: ignore[arg-type]
                                       extra_body={"frugate": {"cache": "sometimes"}})
    assert info.value.status_code == 400


def test_frugate_endpoints_through_the_sdk(client: openai.OpenAI) -> None:
    """The SDK's generic get/post reach /v1/usage and /v1/feedback with the same client."""
    raw = client.chat.completions.with_raw_response.create(
        model="small", messages=MSG, max_tokens=4)  # type: ignore[arg-type]
    request_id = raw.headers["x-frugate-request-id"]
    feedback = client.post("/feedback", body={"request_id": request_id, "score": 1.0},
                           cast_to=httpx.Response)
    assert feedback.status_code == 201, feedback.text
    usage: Any = client.get("/usage", cast_to=object, options={"params": {"group_by": "model"}})
    assert usage["object"] == "usage_report"
    assert {r["model"] for r in usage["rows"]} >= {"sim-small"}
    me: Any = client.get("/insights/whoami", cast_to=object)
    assert me["role"] == "team" and me["team"] == "clients"


async def test_async_raw_stream_with_tools(gateway: GatewayServer, api_key: str) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=api_key,
                                  max_retries=0) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model="small", messages=MSG, tools=TOOLS, max_tokens=40)  # type: ignore[arg-type]
        assert raw.headers["x-frugate-route"] == "small"
        call = raw.parse().choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
        assert "city" in json.loads(call.function.arguments)  # type: ignore[union-attr]
        async with c.chat.completions.with_streaming_response.create(
                model="small", messages=MSG, tools=TOOLS, max_tokens=40,  # type: ignore[arg-type]
                stream=True) as resp:
            assert resp.headers["x-frugate-route"] == "small"
            args = ""
            async for chunk in await resp.parse():
                deltas = chunk.choices[0].delta.tool_calls if chunk.choices else None
                for tc in deltas or []:
                    args += (tc.function.arguments or "") if tc.function else ""
        assert "city" in json.loads(args)


def test_budget_exhaustion_is_the_sdks_rate_limit_error(gateway: GatewayServer) -> None:
    with admin_client(gateway) as admin:
        team = ok(admin.get("/admin/teams", params={"name": "clients"}))["data"][0]
        key = new_key(admin, team["id"], name="tiny")
        ok(admin.put(f"/admin/keys/{key['id']}/budget", json={"limit_usd": 0.000001}))
    with openai.OpenAI(base_url=gateway.base_url, api_key=key["key"], max_retries=0) as c, \
            pytest.raises(openai.RateLimitError) as info:
        c.chat.completions.create(model="large", messages=MSG,  # type: ignore[arg-type]
                                  max_tokens=200)
    err = info.value
    assert err.status_code == 429 and err.type == "budget_exceeded"
    assert int(err.response.headers["retry-after"]) > 0
    assert key["key"] not in str(err) and MASTER not in str(err)
