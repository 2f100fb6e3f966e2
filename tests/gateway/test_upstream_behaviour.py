"""Failover, cancellation and load balancing against real simulator processes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.harness import GatewayServer, pool, settings_for
from workers.sim.process import SimServer

MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def two_replicas() -> Iterator[list[SimServer]]:
    sims = [SimServer(model="sim-small", profile="fast", itl_ms=2.0, ttft_ms=5.0).start()
            for _ in range(2)]
    try:
        yield sims
    finally:
        for s in sims:
            s.close()


def _gateway(sims: list[SimServer], tmp: Path, embedder: Any, **extra: Any) -> GatewayServer:
    # These tests count what reaches each replica: identical requests must not be cache hits.
    return GatewayServer(settings_for([pool("small", *(s.url for s in sims))], tmp,
                                      cache={"enabled": False}, **extra), embedder)


def test_failover_no_client_errors_and_readmission(
        two_replicas: list[SimServer], tmp_path: Path, embedder: Any) -> None:
    a, b = two_replicas
    with _gateway(two_replicas, tmp_path, embedder) as gw:
        key = gw.make_key()

        def client() -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=gw.base_url, api_key=key, max_retries=0)

        async def load() -> list[BaseException | None]:
            async with client() as c:
                return await _waves(c)

        async def _waves(client: openai.AsyncOpenAI) -> list[BaseException | None]:
            async def one(i: int) -> BaseException | None:
                try:
                    await client.chat.completions.create(model="small", messages=MSG,  # type: ignore[arg-type]
                                                         max_tokens=20)
                except openai.APIError as exc:
                    return exc
                return None

            results: list[BaseException | None] = []
            for wave in range(12):
                if wave == 4:
                    a.kill()  # the replica dies mid-load
                results += await asyncio.gather(*(one(i) for i in range(8)))
            return results

        results = asyncio.run(load())
        errors = [r for r in results if r is not None]
        assert errors == [], f"{len(errors)} client errors, e.g. {errors[:1]}"
        replicas = {r.url: r for r in gw.state.pools["small"].replicas}
        assert not replicas[a.url].available(), "the dead replica must be ejected"
        served_b = b.stats()
        assert served_b["completed"] > 0

        a.start()  # it comes back on the same port
        deadline = time.monotonic() + 10
        while not replicas[a.url].available() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert replicas[a.url].available(), "the replica must be readmitted once healthy"
        before = a.stats()["completed"]

        async def more() -> None:
            async with client() as c:
                await asyncio.gather(*(c.chat.completions.create(
                    model="small", messages=MSG, max_tokens=5) for _ in range(40)))  # type: ignore[arg-type]

        asyncio.run(more())
        assert a.stats()["completed"] > before, "readmitted replica gets traffic"


def test_client_disconnect_mid_stream_aborts_upstream(tmp_path: Path, embedder: Any) -> None:
    with SimServer(model="sim-small", profile="fast", itl_ms=50.0,
                   output_tokens=(400, 400)) as sim, \
            _gateway([sim], tmp_path, embedder) as gw:
        key = gw.make_key()
        with httpx.Client(base_url=gw.base_url, timeout=10) as http, http.stream(
                "POST", "/chat/completions", headers={"authorization": f"Bearer {key}"},
                json={"model": "small", "messages": MSG, "stream": True,
                      "max_tokens": 400}) as r:
            assert r.status_code == 200
            it = r.iter_bytes()
            next(it)
            next(it)
            assert sim.stats()["running"] == 1
        # The client hung up: the simulator must see the abort within a second.
        closed = time.monotonic()
        while time.monotonic() - closed < 1.0:
            st = sim.stats()
            if st["aborted"] == 1 and st["running"] == 0:
                break
            time.sleep(0.02)
        st = sim.stats()
        assert st["aborted"] == 1 and st["running"] == 0, st
        # ...and the aborted stream is still billed: prompt plus the tokens it streamed.
        deadline = time.monotonic() + 5
        while gw.state.meter.admission.open_holds() and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.02)
        assert gw.state.meter.admission.open_holds() == 0  # type: ignore[attr-defined]


def test_traffic_shifts_away_from_a_slow_replica(tmp_path: Path, embedder: Any) -> None:
    fast = SimServer(model="sim-small", profile="fast", itl_ms=1.0, max_num_seqs=64).start()
    slow = SimServer(model="sim-small", profile="fast", itl_ms=40.0, max_num_seqs=2).start()
    try:
        with _gateway([fast, slow], tmp_path, embedder) as gw:
            key = gw.make_key()

            async def load() -> None:
                sem = asyncio.Semaphore(16)
                async with openai.AsyncOpenAI(base_url=gw.base_url, api_key=key,
                                              max_retries=0) as client:

                    async def one() -> None:
                        async with sem:
                            await client.chat.completions.create(
                                model="small", messages=MSG, max_tokens=20)  # type: ignore[arg-type]

                    await asyncio.gather(*(one() for _ in range(160)))

            asyncio.run(load())
            served: Counter[str] = Counter()
            served["fast"] = fast.stats()["completed"]
            served["slow"] = slow.stats()["completed"]
            assert served["fast"] > 3 * served["slow"], served
    finally:
        fast.close()
        slow.close()
