"""`model: "auto"`: the router picks a pool; overrides, headers and the ledger record it."""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from embedder.window import query_window
from tests.gateway.harness import GatewayServer, pool, settings_for
from workers.sim.process import SimServer

# The first 120 prompts of ../shared/data/routing/mmlu.csv (MMLU via lm-sys/RouteLLM, Apache-2.0),
# copied so the suite runs from a clone anywhere.
DATA = Path(__file__).resolve().parents[1] / "data" / "mmlu_sample.csv"


# Set by `routed`: a cascade threshold between two seeds' answers, measured on the simulator.
CASCADE: dict[str, Any] = {}
CASCADE_TEXT = "Name a prime number."


def _seed_logprobs(sim: SimServer) -> dict[int, float]:
    """The small simulator's mean token logprob for CASCADE_TEXT, per seed."""
    out = {}
    for seed in range(1, 13):
        r = httpx.post(sim.url + "/v1/chat/completions", timeout=10, json={
            "model": "sim-small", "max_tokens": 8, "seed": seed, "logprobs": True,
            "messages": [{"role": "user", "content": CASCADE_TEXT}]})
        values = [t["logprob"] for t in r.json()["choices"][0]["logprobs"]["content"]]
        out[seed] = sum(values) / len(values)
    return out


@pytest.fixture(scope="module")
def routed(embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[GatewayServer, dict[str, SimServer]]]:
    sims = {n: SimServer(model=f"sim-{n}", profile="fast", max_model_len=ctx).start()
            for n, ctx in (("small", 2048), ("large", 8192))}
    try:
        means = sorted(_seed_logprobs(sims["small"]).items(), key=lambda kv: kv[1])
        (low, low_mean), (high, high_mean) = means[0], means[-1]
        assert high_mean - low_mean > 0.05, means  # seeds give answers of different confidence
        CASCADE.update(low_seed=low, high_seed=high, threshold=(low_mean + high_mean) / 2)
        settings = settings_for(
            [pool("small", sims["small"].url, max_context=2048),
             pool("large", sims["large"].url, max_context=8192,
                  price={"input": 10.0, "output": 20.0})],
            tmp_path_factory.mktemp("routing"),
            routing={"baseline_pool": "large", "policies": [
                {"name": "auto", "small": "small", "large": "large", "large_share": 0.3},
                {"name": "always-small", "small": "small", "large": "large", "large_share": 0.0},
                {"name": "always-large", "small": "small", "large": "large", "large_share": 1.0},
                {"name": "strict-large", "small": "small", "large": "large", "large_share": 1.0,
                 "allow_degrade": False},
                {"name": "tracked", "small": "small", "large": "large", "large_share": 0.3,
                 "track_share": True, "track_window": 64},
                {"name": "cascade", "small": "small", "large": "large", "large_share": 0.0,
                 "cascade_min_logprob": CASCADE["threshold"]},
            ]})
        with GatewayServer(settings, embedder) as gw:
            yield gw, sims
    finally:
        for s in sims.values():
            s.close()


def _ask(gw: GatewayServer, key: str, model: str, text: str, **kw: Any) -> Any:
    with openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0) as c:
        return c.chat.completions.with_raw_response.create(
            model=model, max_tokens=8, messages=[{"role": "user", "content": text}], **kw)


def test_auto_routes_and_records_the_decision(routed: tuple[GatewayServer, Any]) -> None:
    gw, _ = routed
    key = gw.make_key(tenant="r1")
    raw = _ask(gw, key, "always-large", "What is 2+2?")
    assert raw.headers["x-frugate-route"] == "large"
    raw = _ask(gw, key, "always-small", "Prove that there are infinitely many primes.")
    assert raw.headers["x-frugate-route"] == "small"
    gw.call(gw.state.ledger.flush())
    rows = gw.call(_ledger(gw))
    decisions = {r["route_decision"] for r in rows}
    assert {"always-large:large:score_above_threshold",
            "always-small:small:score_below_threshold"} <= decisions
    assert all(r["route_score"] is not None for r in rows)
    # Routing to small saved money against the all-large baseline, and the ledger says so.
    small_row = next(r for r in rows if r["route_decision"].startswith("always-small"))
    assert small_row["baseline_micros"] > small_row["cost_micros"]


def test_a_long_prompt_is_scored_on_its_query_window(
        embedder: Any, routed: tuple[GatewayServer, Any]) -> None:
    """The router was trained on embeddings of `query_window(prompt)`; the gateway must embed
    the same text, or a few-shot prompt is scored on its first examples only."""
    gw, _ = routed
    shots = "\n\n".join(f"Question: What is {i} + {i}?\nAnswer: {2 * i}" for i in range(60))
    text = shots + "\n\nQuestion: Explain why the halting problem is undecidable.\nAnswer:"
    window = query_window(text)
    assert window != text  # long enough to be cut
    raw = _ask(gw, gw.make_key(tenant="r-window"), "auto", text, extra_body={
        "frugate": {"cache": "bypass"}})
    got = float(raw.headers["x-frugate-route-score"])
    want = gw.state.routing.router.score(text, embedder.embed([window])[0])
    head_only = gw.state.routing.router.score(text, embedder.embed([text])[0])
    assert got == pytest.approx(want, abs=1e-3)
    assert abs(head_only - want) > 1e-3  # the check above can tell the two apart


def test_auto_sends_a_minority_of_exam_questions_to_large(
        routed: tuple[GatewayServer, Any]) -> None:
    gw, _ = routed
    key = gw.make_key(tenant="r2")
    with DATA.open() as f:
        prompts = [row["prompt"] for _, row in zip(range(120), csv.DictReader(f), strict=False)]
    routes = Counter(_ask(gw, key, "auto", p[:1500]).headers["x-frugate-route"] for p in prompts)
    share = routes["large"] / sum(routes.values())
    # Calibrated for 30% large on mixed calibration data; exam questions must not all go large.
    assert 0.05 <= share <= 0.6, routes


# Coding tasks score far above the pooled calibration data: a fixed 30% threshold sends
# every one of them to large.
CODE_TASKS = [f"Write a python function to {verb} a list of {kind}."
              for verb in ("sort", "reverse", "sum", "deduplicate", "flatten", "rotate", "count",
                           "merge")
              for kind in ("integers", "strings", "tuples", "floats", "dates")]


def test_a_tracked_share_holds_on_traffic_unlike_the_calibration_data(
        routed: tuple[GatewayServer, Any]) -> None:
    gw, _ = routed
    key = gw.make_key(tenant="r5")
    fixed = Counter(_ask(gw, key, "auto", p).headers["x-frugate-route"] for p in CODE_TASKS)
    assert fixed["large"] >= 0.9 * len(CODE_TASKS), fixed  # what tracking corrects
    calibrated = gw.state.routing.threshold("tracked")
    fresh = {"x-frugate-cache-control": "no-cache"}  # a cache hit is not routed
    for p in CODE_TASKS + CODE_TASKS[:24]:  # 64 scores: the tracker's first window
        _ask(gw, key, "tracked", p, extra_headers=fresh)
    assert gw.state.routing.threshold("tracked") > calibrated
    tracked = Counter(_ask(gw, key, "tracked", p, extra_headers=fresh).headers["x-frugate-route"]
                      for p in CODE_TASKS)
    share = tracked["large"] / len(CODE_TASKS)
    assert 0.2 <= share <= 0.4, tracked
    metrics = httpx.get(gw.base_url.removesuffix("/v1") + "/metrics").text
    assert 'frugate_route_threshold{policy="tracked",tracked="true"}' in metrics


def test_cascade_escalates_an_unsure_small_answer_and_bills_both(
        routed: tuple[GatewayServer, Any]) -> None:
    gw, _ = routed
    key = gw.make_key(tenant="r6")
    fresh = {"x-frugate-cache-control": "no-cache"}
    sure = _ask(gw, key, "cascade", CASCADE_TEXT, seed=CASCADE["high_seed"], extra_headers=fresh)
    assert sure.headers["x-frugate-route"] == "small"
    assert sure.parse().choices[0].logprobs is None  # asked by the gateway, not the client
    unsure = _ask(gw, key, "cascade", CASCADE_TEXT, seed=CASCADE["low_seed"],
                  extra_headers=fresh)
    assert unsure.headers["x-frugate-route"] == "large"
    assert unsure.parse().model == "sim-large"
    asked = _ask(gw, key, "cascade", CASCADE_TEXT, seed=CASCADE["high_seed"], logprobs=True,
                 extra_headers=fresh)
    assert asked.parse().choices[0].logprobs.content  # the client's own request is kept
    streamed_ids = {}
    with openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0) as c:
        for seed, route, model in ((CASCADE["low_seed"], "large", "sim-large"),
                                   (CASCADE["high_seed"], "small", "sim-small")):
            streamed = c.chat.completions.with_raw_response.create(
                model="cascade", max_tokens=8, seed=seed, stream=True,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": CASCADE_TEXT}], extra_headers=fresh)
            # Escalated: large's live stream. Accepted: small's answer replayed as SSE.
            assert streamed.headers["x-frugate-route"] == route
            chunks = list(streamed.parse())
            assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            assert {ch.model for ch in chunks} == {model}
            assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
            assert all(ch.choices[0].logprobs is None for ch in chunks if ch.choices)
            streamed_ids[route] = streamed.headers["x-frugate-request-id"]
    gw.call(gw.state.ledger.flush())
    rows = {r["request_id"]: r for r in gw.call(_ledger(gw))}
    accepted = rows[sure.headers["x-frugate-request-id"]]
    escalated = rows[unsure.headers["x-frugate-request-id"]]
    assert accepted["route_decision"] == "cascade:small:cascade_accepted"
    assert accepted["cascade_micros"] == 0
    assert escalated["route_decision"] == "cascade:large:cascade_escalated"
    assert escalated["pool"] == "large"
    large_cost = escalated["prompt_tokens"] * 10 + escalated["completion_tokens"] * 20
    assert escalated["cascade_micros"] > 0
    assert escalated["cost_micros"] == pytest.approx(large_cost + escalated["cascade_micros"],
                                                     abs=1)
    streamed_up, streamed_kept = rows[streamed_ids["large"]], rows[streamed_ids["small"]]
    assert streamed_up["route_decision"] == "cascade:large:cascade_escalated"
    assert streamed_up["cascade_micros"] > 0 and streamed_up["completion_tokens"] > 0
    assert streamed_kept["route_decision"] == "cascade:small:cascade_accepted"


def test_context_overflow_goes_large(routed: tuple[GatewayServer, Any]) -> None:
    gw, _ = routed
    key = gw.make_key(tenant="r3")
    long_text = "Summarise this. " + "word " * 2100  # beyond the small pool's 2048 tokens
    raw = _ask(gw, key, "always-small", long_text)
    assert raw.headers["x-frugate-route"] == "large"


def test_unhealthy_pool_falls_back_and_degrade_is_optional(
        routed: tuple[GatewayServer, dict[str, SimServer]]) -> None:
    gw, sims = routed
    key = gw.make_key(tenant="r4")
    try:
        _set_health(gw, sims, "large", healthy=False)
        assert _ask(gw, key, "always-large", "hi").headers["x-frugate-route"] == "small"
        with pytest.raises(openai.APIStatusError) as info:  # degrading not allowed: no route
            _ask(gw, key, "strict-large", "hi")
        assert info.value.status_code == 503
        _set_health(gw, sims, "large", healthy=True)
        _set_health(gw, sims, "small", healthy=False)
        assert _ask(gw, key, "always-small", "hi").headers["x-frugate-route"] == "large"
    finally:
        _set_health(gw, sims, "large", healthy=True)
        _set_health(gw, sims, "small", healthy=True)


def _set_health(gw: GatewayServer, sims: dict[str, SimServer], name: str,
                healthy: bool) -> None:
    """Make a replica fail (or pass) its health checks and wait until the gateway agrees."""
    sims[name].faults(unhealthy=not healthy)
    replica = gw.state.pools[name].replicas[0]
    deadline = time.monotonic() + 10
    while replica.available() != healthy and time.monotonic() < deadline:
        time.sleep(0.05)
    assert replica.available() == healthy


async def _ledger(gw: GatewayServer) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from gateway.storage.models import LedgerEntry

    async with gw.state.sessions() as s:
        rows = (await s.scalars(select(LedgerEntry))).all()
    return [{c: getattr(r, c) for c in (
        "request_id", "route_decision", "route_score", "cost_micros", "baseline_micros",
        "cascade_micros", "pool", "prompt_tokens", "completion_tokens")} for r in rows]


def test_a_cascade_holds_budget_for_both_calls() -> None:
    from gateway.accounting.memory import MemoryAdmission
    from gateway.accounting.meter import Meter
    from gateway.accounting.prices import ModelPrice
    from gateway.config import Price
    from gateway.tenancy.directory import Directory

    prices = {"small": ModelPrice.from_config(Price(input=1, output=2)),
              "large": ModelPrice.from_config(Price(input=10, output=20))}
    meter = Meter(MemoryAdmission(hold_ttl_s=60), Directory(), sink=set(), config_prices=prices,
                  baseline_pool="large")
    either = meter.estimate(["small", "large"], 100, 50)
    both = meter.estimate(["small", "large"], 100, 50, all_of=True)
    assert either == meter.estimate(["large"], 100, 50)
    assert both == either + meter.estimate(["small"], 100, 50)
