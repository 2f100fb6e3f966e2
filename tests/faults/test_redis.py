"""Redis outages: down for 10 s, and restarted, under steady traffic.

Each test runs its own redis-server on a free port (the shared one is never touched), with an
fsynced append-only file as a production Redis holding ledger events must have. Expected:
- `admission.fail_open: false` (the default): while Redis is down, new requests get
  503 `overloaded` with Retry-After; `true`: they are admitted uncounted;
- streams already running finish normally; settlements that could not reach Redis are written
  to the ledger by the process itself, and their holds are released once Redis is back;
- nothing is lost from the ledger, and the gateway recovers without a restart.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_client

from tests.faults.infra import RedisServer, open_holds, settled, sse_events
from tests.gateway.harness import GatewayServer, settings_for
from tests.gateway.money import MODEL_PRICE, PRICE, ledger_rows, sim_usage
from workers.sim.process import SimServer

pytestmark = pytest.mark.faults

OUTAGE_S = 10.0
MSG = [{"role": "user", "content": "Count the ways a cache can fail."}]


@dataclass
class Result:
    sent: float
    status: int
    rid: str | None
    error_type: str | None = None
    retry_after: str | None = None
    elapsed: float = 0.0


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(model="sim-small", profile="fast", itl_ms=4.0, output_tokens=(10, 40)) as s:
        yield s


def _gateway(sim: SimServer, redis: RedisServer, tmp: Path, embedder: Any,
             fail_open: bool) -> GatewayServer:
    settings = settings_for(
        [{"name": "small", "model": "sim-small", "replicas": [sim.url], "price": PRICE}], tmp,
        redis_url=redis.url, redis_prefix="fgt-" + secrets.token_hex(3),
        admission={"fail_open": fail_open}, ledger={"claim_idle_ms": 1000},
        cache={"enabled": False})  # every request reaches the replica and the ledger
    return GatewayServer(settings, embedder)


async def _one(http: httpx.AsyncClient, i: int, max_tokens: int = 20) -> Result:
    t0 = time.monotonic()
    body = {"model": "small", "messages": MSG, "max_tokens": max_tokens, "stream": i % 2 == 1}
    r = await http.post("/chat/completions", json=body)
    res = Result(t0, r.status_code, r.headers.get("x-frugate-request-id"),
                 elapsed=time.monotonic() - t0)
    if r.status_code != 200:
        res.error_type = r.json()["error"]["type"]
        res.retry_after = r.headers.get("retry-after")
    elif body["stream"]:
        assert sse_events(r.content)[-1] == b"[DONE]"
    return res


async def _outage(gw: GatewayServer, key: str, redis: RedisServer, down_s: float
                  ) -> tuple[list[Result], list[Result], float, float]:
    """Steady traffic (10 requests/s); long streams in flight when Redis dies; Redis is down
    for `down_s`, then back. Returns (traffic, long streams, killed at, restarted at)."""
    async with httpx.AsyncClient(base_url=gw.base_url, timeout=30,
                                 headers={"authorization": f"Bearer {key}"}) as http:
        tasks: list[asyncio.Task[Result]] = []
        stop = asyncio.Event()

        async def steady() -> None:
            i = 0
            while not stop.is_set():
                tasks.append(asyncio.create_task(_one(http, i)))
                i += 1
                await asyncio.sleep(0.1)

        load = asyncio.create_task(steady())
        await asyncio.sleep(1.0)
        long = [asyncio.create_task(_one(http, 1, max_tokens=300)) for _ in range(4)]
        await asyncio.sleep(0.3)  # admitted and streaming
        await asyncio.to_thread(redis.kill)
        killed = time.monotonic()
        await asyncio.sleep(down_s)
        await asyncio.to_thread(redis.start)
        back = time.monotonic()
        await asyncio.sleep(3.0)
        stop.set()
        await load
        return (list(await asyncio.gather(*tasks)), list(await asyncio.gather(*long)), killed,
                back)


def _check_ledger(gw: GatewayServer, served: list[Result], sim: SimServer) -> None:
    n = gw.call(settled(gw.state), timeout=60)
    rows = {r["request_id"]: r for r in ledger_rows(gw.settings.sqlalchemy_url, expect=n)}
    usage = sim_usage(sim)
    assert {r.rid for r in served} == set(rows), "every served request has exactly one row"
    for rid, row in rows.items():
        assert (row["prompt_tokens"], row["completion_tokens"]) == usage[rid]
        assert row["cost_micros"] == MODEL_PRICE.cost(*usage[rid])


@pytest.mark.parametrize("fail_open", [False, True], ids=["fail-closed", "fail-open"])
def test_redis_down_for_10_seconds(fail_open: bool, sim: SimServer, tmp_path: Path,
                                   embedder: Any) -> None:
    with RedisServer() as redis, _gateway(sim, redis, tmp_path, embedder, fail_open) as gw:
        key = gw.make_key()
        results, long, killed, back = asyncio.run(_outage(gw, key, redis, OUTAGE_S))
        # Streams admitted before the outage finished normally, settled without Redis.
        assert [r.status for r in long] == [200] * 4
        during = [r for r in results if killed + 0.5 < r.sent < killed + OUTAGE_S - 0.2]
        after = [r for r in results if r.sent > back + 2.0]
        assert len(during) >= 50
        if fail_open:
            assert all(r.status == 200 for r in during), {(r.status, r.error_type)
                                                          for r in during}
        else:
            assert all((r.status, r.error_type) == (503, "overloaded") for r in during), \
                [(r.status, r.error_type, round(r.sent - killed, 2)) for r in during
                 if (r.status, r.error_type) != (503, "overloaded")]
            assert all(r.retry_after is not None and int(r.retry_after) >= 1 for r in during)
            assert max(r.elapsed for r in during) < 1.0, "refused at once, not after a hang"
        assert after and all(r.status == 200 for r in after), "recovered without a restart"
        served = [r for r in results + long if r.status == 200]
        _check_ledger(gw, served, sim)
        assert gw.call(open_holds(gw.state)) == 0, "holds settled during the outage released"


def test_redis_restart_under_load(sim: SimServer, tmp_path: Path, embedder: Any) -> None:
    """A quick restart (kill, start at once): the stream, consumer group and scripts come back
    from the append-only file or are recreated; traffic resumes within a second or two."""
    with RedisServer() as redis, _gateway(sim, redis, tmp_path, embedder, False) as gw:
        key = gw.make_key()
        results, long, _, back = asyncio.run(_outage(gw, key, redis, 0.0))
        assert [r.status for r in long] == [200] * 4
        refused = [r for r in results if r.status != 200]
        assert all((r.status, r.error_type) == (503, "overloaded") for r in refused)
        assert len(refused) <= 20, f"{len(refused)} refused around a restart"
        after = [r for r in results if r.sent > back + 1.5]
        assert after and all(r.status == 200 for r in after)
        _check_ledger(gw, [r for r in results + long if r.status == 200], sim)
        assert gw.call(open_holds(gw.state)) == 0


def test_a_client_that_leaves_during_admission_leaves_no_hold(sim: SimServer, tmp_path: Path,
                                                               embedder: Any) -> None:
    """Redis stalls (DEBUG SLEEP) while requests wait for admission; their clients give up.
    The admission scripts still run when Redis wakes up: every hold they took is released."""
    with RedisServer() as redis, _gateway(sim, redis, tmp_path, embedder, False) as gw:
        key = gw.make_key()
        admin = redis_client.Redis.from_url(redis.url)

        async def go() -> None:
            async with httpx.AsyncClient(base_url=gw.base_url, timeout=0.3,
                                         headers={"authorization": f"Bearer {key}"}) as http:
                sleeper = asyncio.create_task(asyncio.to_thread(
                    admin.execute_command, "DEBUG", "SLEEP", "1.0"))
                await asyncio.sleep(0.1)
                gave_up = await asyncio.gather(*(http.post("/chat/completions", json={
                    "model": "small", "messages": MSG, "max_tokens": 5}) for _ in range(8)),
                    return_exceptions=True)
                assert all(isinstance(g, httpx.TimeoutException) for g in gave_up), gave_up
                await sleeper

        asyncio.run(go())
        admin.close()
        time.sleep(0.5)
        gw.call(settled(gw.state), timeout=60)
        assert gw.call(open_holds(gw.state)) == 0
        # and the gateway serves normally afterwards
        r = httpx.post(gw.base_url + "/chat/completions", timeout=10,
                       headers={"authorization": f"Bearer {key}"},
                       json={"model": "small", "messages": MSG, "max_tokens": 5})
        assert r.status_code == 200
