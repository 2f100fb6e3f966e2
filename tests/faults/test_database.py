"""PostgreSQL down for 10 s under steady traffic.

The shared PostgreSQL is never stopped: the gateway reaches a fresh database through a TCP
proxy we control, and the outage is the proxy cutting every open connection and refusing new
ones for 10 s (what clients see when the server or the network goes away), then listening
again on the same port. Expected: requests keep being served (keys and budgets are read from
the in-memory directory, not SQL); ledger rows wait (in memory for the embedded writer, in the
Redis Stream with Redis) and are all written, exactly once, when the database is back.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.infra import TcpProxy, open_holds, settled, sse_events
from tests.gateway.harness import GatewayServer, settings_for
from tests.gateway.money import MODEL_PRICE, PRICE, ledger_rows, sim_usage
from tests.gateway.procs import REDIS_URL, fresh_postgres
from workers.sim.process import SimServer

pytestmark = pytest.mark.faults

OUTAGE_S = 10.0
MSG = [{"role": "user", "content": "Summarise the ledger design."}]


@pytest.fixture
def postgres() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


async def _traffic(gw: GatewayServer, key: str, proxy: TcpProxy
                   ) -> tuple[list[tuple[float, int, str | None]], float, float]:
    async with httpx.AsyncClient(base_url=gw.base_url, timeout=30,
                                 headers={"authorization": f"Bearer {key}"}) as http:

        async def one(i: int) -> tuple[float, int, str | None]:
            t0 = time.monotonic()
            r = await http.post("/chat/completions", json={
                "model": "small", "messages": MSG, "max_tokens": 20, "stream": i % 2 == 1})
            if r.status_code == 200 and i % 2:
                assert sse_events(r.content)[-1] == b"[DONE]"
            return t0, r.status_code, r.headers.get("x-frugate-request-id")

        tasks = []
        cut_at = back_at = 0.0
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < OUTAGE_S + 5.0:
            elapsed = time.monotonic() - start
            if not cut_at and elapsed > 1.0:
                await asyncio.to_thread(proxy.cut)
                cut_at = time.monotonic()
            if cut_at and not back_at and time.monotonic() - cut_at > OUTAGE_S:
                await asyncio.to_thread(proxy.restore)
                back_at = time.monotonic()
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            await asyncio.sleep(0.1)
        return list(await asyncio.gather(*tasks)), cut_at, back_at


@pytest.mark.parametrize("mode", ["embedded-ledger", "redis-stream"])
def test_postgres_down_for_10_seconds(mode: str, postgres: str, tmp_path: Path,
                                      embedder: Any) -> None:
    host_port = postgres.split("@", 1)[1].split("/", 1)[0]
    with TcpProxy("127.0.0.1", int(host_port.split(":")[1])) as proxy, \
            SimServer(model="sim-small", profile="fast", itl_ms=2.0,
                      output_tokens=(10, 30)) as sim:
        via_proxy = postgres.replace(host_port, f"127.0.0.1:{proxy.port}")
        extra: dict[str, Any] = {"database_url": via_proxy, "cache": {"enabled": False}}
        if mode == "redis-stream":
            extra |= {"redis_url": REDIS_URL, "redis_prefix": "fgt-" + secrets.token_hex(4)}
        settings = settings_for(
            [{"name": "small", "model": "sim-small", "replicas": [sim.url], "price": PRICE}],
            tmp_path, **extra)
        with GatewayServer(settings, embedder) as gw:
            key = gw.make_key()
            results, cut_at, back_at = asyncio.run(_traffic(gw, key, proxy))
            during = [r for r in results if cut_at + 0.2 < r[0] < back_at]
            assert len(during) >= 50
            assert all(status == 200 for _, status, _ in results), \
                {status for _, status, _ in results}
            n = gw.call(settled(gw.state), timeout=90)
            assert gw.call(open_holds(gw.state)) == 0
            # The gateway still reads and writes the database after the outage.
            r = httpx.get(gw.url + "/admin/tenants", timeout=10,
                          headers={"authorization": "Bearer fk-test-master"})
            assert r.status_code == 200
        rows = {r["request_id"]: r for r in ledger_rows(postgres, expect=len(results))}
        usage = sim_usage(sim)
    assert n == len(results)
    assert set(rows) == {rid for _, _, rid in results}, "every request has exactly one row"
    for rid, row in rows.items():
        assert (row["prompt_tokens"], row["completion_tokens"]) == usage[rid]
        assert row["cost_micros"] == MODEL_PRICE.cost(*usage[rid])
