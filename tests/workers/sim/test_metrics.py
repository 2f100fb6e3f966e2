"""/metrics with vLLM's names, and the batch/queue state it exposes under load."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from workers.sim import SimServer

VLLM_NAMES = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "vllm:prompt_tokens",
    "vllm:generation_tokens",
    "vllm:request_success",
    "vllm:prefix_cache_queries",
    "vllm:prefix_cache_hits",
    "vllm:num_preemptions",
    "vllm:time_to_first_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
)
SPEC_NAMES = (
    "vllm:spec_decode_num_drafts",
    "vllm:spec_decode_num_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens",
    "vllm:spec_decode_num_accepted_tokens_per_pos",
)


def scrape(server: SimServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples by (name, labels other than model_name/engine), checking those two labels."""
    values = {}
    for family in text_string_to_metric_families(server.metrics()):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("engine") == "0"
            if family.name != "vllm:cache_config_info":
                assert labels.pop("model_name") == server.config.model
            values[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return values


def families(server: SimServer) -> set[str]:
    return {f.name for f in text_string_to_metric_families(server.metrics())}


def test_vllm_metric_names_and_labels(sim: SimServer) -> None:
    names = families(sim)
    assert set(VLLM_NAMES) <= names
    assert not set(SPEC_NAMES) & names  # only exported when speculating, like vLLM


def test_counters_follow_the_reported_usage(sim: SimServer) -> None:
    before = scrape(sim)
    with openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as client:
        result = client.chat.completions.create(
            model="sim-model",
            messages=[{"role": "user", "content": "count me"}],
            max_tokens=9,
            extra_body={"ignore_eos": True},
        )
    after = scrape(sim)
    usage = result.usage
    assert usage is not None

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert delta("vllm:prompt_tokens_total") == usage.prompt_tokens
    assert delta("vllm:generation_tokens_total") == usage.completion_tokens == 9
    assert delta("vllm:request_success_total", finished_reason="length") == 1
    assert delta("vllm:prefix_cache_queries_total") == usage.prompt_tokens
    assert delta("vllm:e2e_request_latency_seconds_count") == 1


def test_spec_decode_counters(spec_sim: SimServer) -> None:
    before = scrape(spec_sim)
    httpx.post(
        spec_sim.url + "/v1/chat/completions",
        json={
            "model": "sim-model",
            "messages": [{"role": "user", "content": "go"}],
            "max_tokens": 400,
            "ignore_eos": True,
        },
    )
    after = scrape(spec_sim)

    def delta(name: str, *labels: tuple[str, str]) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    assert set(SPEC_NAMES) <= families(spec_sim)
    drafts = delta("vllm:spec_decode_num_drafts_total")
    draft_tokens = delta("vllm:spec_decode_num_draft_tokens_total")
    accepted = delta("vllm:spec_decode_num_accepted_tokens_total")
    name = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
    per_pos = [delta(name, ("position", str(p))) for p in range(4)]
    assert draft_tokens == 4 * drafts
    assert accepted == sum(per_pos)
    assert per_pos == sorted(per_pos, reverse=True)
    # Every decode step (all tokens but the first) drafted once; the last step may overshoot.
    assert 399 <= drafts + accepted <= 399 + 4
    # E[accepted per draft] = alpha * (1 - alpha**k) / (1 - alpha) = 1.31, i.e. 0.33 per token.
    assert 0.25 < accepted / draft_tokens < 0.42


async def _timed_requests(server: SimServer, count: int) -> list[float]:
    async def one(client: httpx.AsyncClient) -> float:
        start = time.monotonic()
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "sim-model",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 15,
                "ignore_eos": True,
            },
        )
        assert response.status_code == 200
        return time.monotonic() - start

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(count))))


def test_queue_builds_up_and_latency_grows_with_load(timed: SimServer) -> None:
    # max_num_seqs=4: of 12 concurrent requests, 8 wait for a batch slot (three waves).
    alone = statistics.median(asyncio.run(_timed_requests(timed, 1))[0] for _ in range(3))
    seen: dict[str, Any] = {}
    before = timed.stats()
    metrics_before = scrape(timed)

    async def load_and_watch() -> list[float]:
        task = asyncio.ensure_future(_timed_requests(timed, 12))
        for _ in range(100):  # until all 12 requests have arrived
            await asyncio.sleep(0.02)
            stats = await asyncio.to_thread(timed.stats)
            if stats["received"] - before["received"] == 12:
                break
        seen.update(stats)
        seen["metrics"] = await asyncio.to_thread(scrape, timed)
        return await task

    loaded = asyncio.run(load_and_watch())
    done = seen["completed"] - before["completed"]
    assert seen["running"] == 4 and seen["waiting"] + done == 8
    assert seen["metrics"][("vllm:num_requests_running", ())] == 4
    # Server side: the queue time the engine measured (immune to client-side noise).
    after = scrape(timed)
    key = ("vllm:request_queue_time_seconds_sum", ())
    queued = after[key] - metrics_before[key]
    wave = 15 * 0.020  # 15 decode steps of 20 ms
    assert queued > 8 * wave * 0.9  # 4 requests wait one wave, 4 wait two
    # Client side, loosely: the last wave takes about three times a lone request.
    assert max(loaded) > 2 * alone
