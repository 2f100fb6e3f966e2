"""Money is exact: budgets hold under concurrency, the ledger equals upstream usage, always."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.harness import GatewayServer, settings_for
from tests.gateway.money import MODEL_PRICE, PRICE, ledger_rows, seed, sim_usage
from tests.gateway.procs import REDIS_URL, GatewayProcess, fresh_postgres
from workers.sim.process import SimServer

MSG = [{"role": "user", "content": "Write a short note about budgets."}]


def _pool(*sims: SimServer) -> dict[str, Any]:
    return {"name": "small", "model": "sim-small", "replicas": [s.url for s in sims],
            "price": PRICE, "max_context": 4096}


@pytest.fixture
def postgres() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


async def _burst(urls: list[str], key: str, n: int) -> list[tuple[int, str | None]]:
    async def one(i: int, client: httpx.AsyncClient) -> tuple[int, str | None]:
        r = await client.post(urls[i % len(urls)] + "/v1/chat/completions",
                              headers={"authorization": f"Bearer {key}"},
                              json={"model": "small", "messages": MSG, "max_tokens": 20})
        kind = r.json()["error"]["type"] if r.status_code != 200 else None
        return r.status_code, kind

    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(one(i, client) for i in range(n)))


def test_budget_holds_under_concurrency_across_two_gateways(postgres: str,
                                                             tmp_path: Path) -> None:
    budget_micros = 250_000  # about 48 requests of ~5,200 micro-dollars
    with SimServer(model="sim-small", profile="fast", itl_ms=1.0,
                   output_tokens=(20, 20)) as sim:
        key, _ = asyncio.run(seed(postgres, team_budget_usd="0.25"))
        cfg = {"database_url": postgres, "redis_url": REDIS_URL, "cache": {"enabled": False},
               "redis_prefix": "fgt-" + secrets.token_hex(4), "master_key": "fk-test-master",
               "pools": [_pool(sim)], "ledger": {"claim_idle_ms": 1000},
               "logging": {"level": "WARNING"}}
        gws = [GatewayProcess(cfg, tmp_path / n).start() for n in ("a", "b")]
        try:
            results = asyncio.run(_burst([g.url for g in gws], key, 200))
        finally:
            for g in gws:
                g.stop()
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r == (429, "budget_exceeded")]
    assert len(ok) + len(refused) == 200, {r for r in results if r not in ok + refused}
    assert ok and refused, "the budget must both admit and refuse under this load"
    rows = ledger_rows(postgres, expect=len(ok))
    assert len(rows) == len(ok)
    costs = [r["cost_micros"] for r in rows]
    assert sum(costs) <= budget_micros + max(costs), (sum(costs), budget_micros)


def test_budget_holds_under_concurrency_embedded(tmp_path: Path, embedder: Any) -> None:
    with SimServer(model="sim-small", profile="fast", itl_ms=1.0, output_tokens=(20, 20)) as sim:
        settings = settings_for([_pool(sim)], tmp_path, cache={"enabled": False})
        with GatewayServer(settings, embedder) as gw:
            key = gw.make_key()
            team = gw.state.directory.lookup(
                __import__("gateway.tenancy", fromlist=["hash_key"]).hash_key(key))
            assert team is not None

            async def budget() -> None:
                from decimal import Decimal

                from gateway.tenancy import admin
                async with gw.state.sessions() as s, s.begin():
                    await admin.set_budget(s, "team", team.team_id, limit_usd=Decimal("0.1"),
                                           limit_tokens=None, period="day",
                                           soft_limit_pct=None, webhook_url=None)
                await gw.state.directory.reload_all()

            gw.call(budget())
            results = asyncio.run(_burst([gw.url], key, 200))
            gw.call(gw.state.ledger.flush())
            ok = [r for r in results if r[0] == 200]
            assert ok and any(r == (429, "budget_exceeded") for r in results)
            rows = ledger_rows(str(settings.sqlalchemy_url), expect=len(ok))
    costs = [r["cost_micros"] for r in rows]
    assert len(rows) == len(ok) and sum(costs) <= 100_000 + max(costs)


async def _mixed_traffic(base_url: str, key: str) -> None:
    """Normal, streamed, broken-mid-stream and abandoned requests (streaming and not)."""
    async with openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0) as client, \
            httpx.AsyncClient(base_url=base_url, timeout=30,
                              headers={"authorization": f"Bearer {key}"}) as http:

        async def plain(i: int) -> None:
            await client.chat.completions.create(model="small", messages=MSG,  # type: ignore[arg-type]
                                                 max_tokens=10 + i % 20)

        async def streamed(i: int) -> None:
            opts = {"include_usage": True} if i % 2 else None
            s = await client.chat.completions.create(model="small", messages=MSG,  # type: ignore[arg-type, call-overload]
                                                     max_tokens=30, stream=True,
                                                     stream_options=opts)
            async for _ in s:
                pass

        async def broken(i: int) -> None:
            s = await client.chat.completions.create(  # type: ignore[call-overload]
                model="small", messages=MSG, max_tokens=40, stream=True,
                extra_body={"sim": {"fault": "midstream_error", "after_tokens": 3 + i % 5}})
            async for _ in s:
                pass

        async def abandon_stream(i: int) -> None:
            async with http.stream("POST", "/chat/completions", json={
                    "model": "small", "messages": MSG, "max_tokens": 60, "stream": True}) as r:
                got = 0
                async for _ in r.aiter_bytes():
                    got += 1
                    if got >= 2 + i % 3:
                        break

        async def abandon_json(i: int) -> None:
            # Generation takes ~2.4 s: the client gives up while the replica is working
            # (the wide margin keeps this true on a loaded 2-core machine).
            await asyncio.sleep(0.3)
            with contextlib.suppress(httpx.TimeoutException):
                await http.post("/chat/completions", timeout=1.2 + 0.02 * (i % 5), json={
                    "model": "small", "messages": MSG, "max_tokens": 300, "min_tokens": 300})

        jobs = ([plain(i) for i in range(40)] + [streamed(i) for i in range(20)]
                + [broken(i) for i in range(15)] + [abandon_stream(i) for i in range(15)]
                + [abandon_json(i) for i in range(10)])
        results = await asyncio.gather(*jobs, return_exceptions=True)
        unexpected = [r for r in results if isinstance(r, BaseException)
                      and not isinstance(r, openai.APIError)]
        assert not unexpected, unexpected[:3]


@pytest.mark.parametrize("mode", ["embedded", "redis+postgres"])
def test_ledger_equals_upstream_usage_under_faults_and_aborts(
        mode: str, tmp_path: Path, embedder: Any, request: pytest.FixtureRequest) -> None:
    extra: dict[str, Any] = {}
    if mode != "embedded":
        db = request.getfixturevalue("postgres")
        extra = {"database_url": db, "redis_url": REDIS_URL,
                 "redis_prefix": "fgt-" + secrets.token_hex(4)}
    # One healthy replica, one that fails 30% of requests before the first byte (retried).
    good = SimServer(model="sim-small", profile="fast", itl_ms=8.0, output_tokens=(20, 60))
    flaky = SimServer(model="sim-small", profile="fast", itl_ms=8.0, output_tokens=(20, 60),
                      error_rate=0.3)
    with good, flaky:
        # Billing exactness against the upstream: no cache hits in between.
        settings = settings_for([_pool(good, flaky)], tmp_path, cache={"enabled": False},
                                **extra)
        with GatewayServer(settings, embedder) as gw:
            key = gw.make_key()
            asyncio.run(_mixed_traffic(gw.base_url, key))
            n = gw.call(_settled(gw), timeout=60)
            rows = ledger_rows(settings.sqlalchemy_url, expect=n)
        usage = sim_usage(good, flaky)
    # Requests abandoned before admission never reached a replica and have no row; every
    # request a replica saw has exactly one row.
    assert len(rows) == n >= 90
    assert {k for k, (p, c) in usage.items() if p or c} <= {r["request_id"] for r in rows}
    by_status: dict[str, int] = {}
    mismatches = []
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
        prompt, completion = usage.get(row["request_id"], (0, 0))
        if (row["prompt_tokens"], row["completion_tokens"]) != (prompt, completion) or \
                row["cost_micros"] != MODEL_PRICE.cost(prompt, completion):
            mismatches.append((row, (prompt, completion)))
    assert not mismatches, "\n".join(
        f"{r['status']} ledger=({r['prompt_tokens']},{r['completion_tokens']}) upstream={u}"
        for r, u in mismatches)
    assert sum(r["cost_micros"] for r in rows) == sum(
        MODEL_PRICE.cost(p, c) for p, c in usage.values())
    assert by_status.get("client_aborted", 0) >= 16 and by_status.get("upstream_error", 0) >= 10
    assert any(r["status"] == "client_aborted" and r["completion_tokens"] == 0 for r in rows), \
        "a non-streaming request abandoned mid-generation (billed its prompt only)"


async def _settled(gw: GatewayServer) -> int:
    """Wait until no hold is open and the ledger stopped growing; returns rows written."""
    st = gw.state
    last, stable = -1, 0
    while stable < 10:
        await asyncio.sleep(0.1)
        await st.ledger.flush()
        if st.ledger_consumer is not None:
            await st.ledger_consumer.drain()
        written = st.ledger.written + (st.ledger_consumer.written if st.ledger_consumer else 0)
        holds = await _open_holds(gw)
        stable = stable + 1 if (written == last and holds == 0) else 0
        last = written
    return last


async def _open_holds(gw: GatewayServer) -> int:
    adm: Any = gw.state.admission
    if hasattr(adm, "open") and isinstance(adm.open, dict):
        return len(adm.open)
    return sum([await adm.open_holds(t) for t in gw.state.directory.tenants])


def test_ledger_survives_sigkill_of_a_gateway(postgres: str, tmp_path: Path) -> None:
    """A replica killed mid-load loses no ledger rows: another replica claims its events."""
    with SimServer(model="sim-small", profile="fast", itl_ms=2.0,
                   output_tokens=(10, 30)) as sim:
        key, _ = asyncio.run(seed(postgres))
        cfg = {"database_url": postgres, "redis_url": REDIS_URL, "cache": {"enabled": False},
               "redis_prefix": "fgt-" + secrets.token_hex(4), "master_key": "fk-test-master",
               "pools": [_pool(sim)], "ledger": {"claim_idle_ms": 1000},
               "logging": {"level": "WARNING"}}
        a = GatewayProcess(cfg, tmp_path / "a").start()
        b = GatewayProcess(cfg, tmp_path / "b").start()
        try:
            done = asyncio.run(_load_until_killed(a, key))
            assert a.proc is not None and a.proc.returncode == -9
            rows = ledger_rows(postgres, ids=done, timeout=30)
        finally:
            a.kill()
            b.stop()
    assert len(done) >= 50
    missing = done - {r["request_id"] for r in rows}
    assert not missing, f"{len(missing)} completed requests missing from the ledger"


async def _load_until_killed(gw: GatewayProcess, key: str) -> set[str]:
    """Requests against `gw`; SIGKILL it after 60 completed. Returns ids that completed."""
    done: set[str] = set()
    headers = {"authorization": f"Bearer {key}"}
    killed = asyncio.Event()

    async def one(i: int, client: httpx.AsyncClient) -> None:
        body = {"model": "small", "messages": MSG, "max_tokens": 20, "stream": i % 2 == 0}
        try:
            async with client.stream("POST", gw.base_url + "/chat/completions", json=body,
                                     headers=headers) as r:
                payload = b"".join([c async for c in r.aiter_bytes()])
                complete = r.status_code == 200 and (not body["stream"]
                                                     or payload.endswith(b"data: [DONE]\n\n"))
                if complete:
                    done.add(r.headers["x-frugate-request-id"])
        except httpx.HTTPError:
            return  # the gateway died under this request: it never completed
        if len(done) >= 60 and not killed.is_set():
            killed.set()
            gw.kill()

    async with httpx.AsyncClient(timeout=30) as client:
        sem = asyncio.Semaphore(16)

        async def gated(i: int) -> None:
            if killed.is_set():
                return
            async with sem:
                if not killed.is_set():
                    await one(i, client)

        await asyncio.gather(*(gated(i) for i in range(400)))
    return done
