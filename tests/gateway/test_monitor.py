"""Replica telemetry: vLLM metric parsing and the speculative-decoding acceptance watch."""

from __future__ import annotations

import logging

import pytest

from gateway.config import Pool as PoolConfig
from gateway.upstream.monitor import SpeculationWatch, apply_metrics, parse_metrics
from gateway.upstream.pool import Pool

METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 250.0
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 10.0
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 40.0
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 30.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 9.0
"""


def _pool() -> Pool:
    return Pool(PoolConfig(name="p", model="m", replicas=["http://127.0.0.1:1"]))


def test_parse_and_apply_vllm_metrics() -> None:
    pool = _pool()
    r = pool.replicas[0]
    apply_metrics(r, parse_metrics(METRICS))
    assert (r.running, r.waiting, r.kv_usage) == (3.0, 2.0, 0.25)
    assert r.prefix_hit_rate == pytest.approx(0.25)
    assert (r.spec.drafts, r.spec.draft_tokens, r.spec.accepted_tokens) == (10.0, 40.0, 30.0)


def test_acceptance_collapse_is_logged_once_then_recovery(caplog: pytest.LogCaptureFixture) -> None:
    pool = _pool()
    r = pool.replicas[0]
    watch = SpeculationWatch("p", floor=0.3, min_draft_tokens=100)
    caplog.set_level(logging.INFO, logger="frugate.upstream")

    def scrape(drafted: float, accepted: float) -> None:
        r.spec.draft_tokens, r.spec.accepted_tokens = drafted, accepted
        watch.update(pool)

    scrape(1000, 700)  # first look: a baseline, no judgement
    scrape(2000, 1400)  # 70% accepted
    assert watch.rate == pytest.approx(0.7) and not watch.collapsed
    scrape(3000, 1500)  # 10% accepted in this interval
    scrape(4000, 1600)
    assert watch.collapsed
    warnings = [m for m in caplog.messages if "collapsed" in m]
    assert len(warnings) == 1 and "pool p" in warnings[0]
    scrape(4050, 1610)  # too few drafts to judge: no change
    assert watch.collapsed
    scrape(5000, 2400)
    assert not watch.collapsed and any("recovered" in m for m in caplog.messages)
