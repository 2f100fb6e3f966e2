"""Replica telemetry: vLLM metric parsing and the speculative-decoding acceptance watch."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from gateway.config import Pool as PoolConfig
from gateway.config import Upstream as UpstreamSettings
from gateway.upstream.monitor import Monitor, SpeculationWatch, apply_metrics, parse_metrics
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


async def test_slow_health_probes_eject_only_in_a_row_but_an_error_at_once() -> None:
    """A busy replica that answers /health late keeps serving until `eject_after_failures`
    probes in a row time out; a 503 from /health ejects at once; a good probe readmits."""
    mode = {"health": "slow"}
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            if mode["health"] == "slow":
                await asyncio.sleep(3)  # past the monitor's 2 s probe timeout
            status = b"503 Service Unavailable" if mode["health"] == "error" else b"200 OK"
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(PoolConfig(name="p", model="m", replicas=[f"http://127.0.0.1:{port}"]))
    replica = pool.replicas[0]
    monitor = Monitor([pool], UpstreamSettings(eject_after_failures=2))
    try:
        await monitor.check_health()  # one slow probe: still serving
        assert replica.available() and replica.slow_probes == 1
        await monitor.check_health()  # two in a row: out
        assert not replica.available()
        mode["health"] = "ok"
        await monitor.check_health()
        assert replica.available() and replica.slow_probes == 0
        mode["health"] = "error"
        await monitor.check_health()
        assert not replica.available()
    finally:
        await monitor.stop()
        server.close()
        for task in handlers:  # a slow handler may still be sleeping: no writer outlives the loop
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
