"""The cache stage through the gateway: hits, controls, streaming replay, isolation, Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.harness import GatewayServer, pool, settings_for
from tests.gateway.procs import REDIS_URL, GatewayProcess, fresh_postgres
from workers.sim.process import SimServer


@pytest.fixture(scope="module")
def cached(embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[GatewayServer, SimServer]]:
    sim = SimServer(model="sim-small", profile="fast").start()
    settings = settings_for([pool("small", sim.url)], tmp_path_factory.mktemp("cache"),
                            routing={"baseline_pool": "small"})
    try:
        with GatewayServer(settings, embedder) as gw:
            yield gw, sim
    finally:
        sim.close()


def _ask(gw: GatewayServer, key: str, text: str, **kw: Any) -> Any:
    with openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0) as c:
        return c.chat.completions.with_raw_response.create(
            model="small", max_tokens=12, messages=[{"role": "user", "content": text}], **kw)


def _received(sim: SimServer) -> int:
    return int(sim.stats()["received"])


def test_exact_hit_is_served_without_the_replica_and_billed_as_a_hit(
        cached: tuple[GatewayServer, SimServer]) -> None:
    gw, sim = cached
    key = gw.make_key(tenant="c1")
    q = f"What is the tallest mountain in the Alps? {secrets.token_hex(3)}"
    first = _ask(gw, key, q)
    assert first.headers["x-frugate-cache"] == "miss"
    asyncio.run(asyncio.sleep(0.2))  # the store happens after the answer is sent
    before = _received(sim)
    second = _ask(gw, key, q)
    assert second.headers["x-frugate-cache"] == "hit"
    assert second.headers["x-frugate-cache-kind"] == "exact"
    assert _received(sim) == before, "a hit must not reach the replica"
    a, b = first.parse(), second.parse()
    assert b.choices[0].message.content == a.choices[0].message.content
    assert float(second.headers["x-frugate-cost-usd"]) == 0.0


def test_paraphrase_is_a_semantic_hit_and_a_different_question_is_not(
        cached: tuple[GatewayServer, SimServer]) -> None:
    gw, _ = cached
    # The default false-hit budget (1%) admits no semantic hit on QQP-like data (docs/cache.md);
    # this team trades some precision for hits with its own policy.
    key = gw.make_key(tenant="c2", settings={"cache": {"delta": 0.15}})
    _ask(gw, key, "How do I reset my VPN password?")
    asyncio.run(asyncio.sleep(0.3))
    para = _ask(gw, key, "How can I reset my VPN password?")
    assert para.headers["x-frugate-cache"] == "hit", para.headers
    assert para.headers["x-frugate-cache-kind"] == "semantic"
    other = _ask(gw, key, "How do I reset my email password?")  # near miss: must not hit
    assert other.headers["x-frugate-cache"] == "miss"


def test_stream_replay_of_a_hit_parses_in_the_sdk(cached: tuple[GatewayServer, SimServer]) -> None:
    gw, _ = cached
    key = gw.make_key(tenant="c3")
    q = f"Name three rivers in Europe. {secrets.token_hex(3)}"
    answer = _ask(gw, key, q).parse().choices[0].message.content
    asyncio.run(asyncio.sleep(0.2))
    with openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="small", max_tokens=12, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": q}])
        assert raw.headers["x-frugate-cache"] == "hit"
        chunks = list(raw.parse())
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == answer
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_controls_and_eligibility(cached: tuple[GatewayServer, SimServer]) -> None:
    gw, sim = cached
    key = gw.make_key(tenant="c4")
    q = f"List two prime numbers. {secrets.token_hex(3)}"
    no_store = _ask(gw, key, q, extra_body={"frugate": {"cache": "no-store"}})
    assert no_store.headers["x-frugate-cache"] == "miss"
    asyncio.run(asyncio.sleep(0.2))
    assert _ask(gw, key, q).headers["x-frugate-cache"] == "miss"  # nothing was stored
    asyncio.run(asyncio.sleep(0.2))
    before = _received(sim)
    refreshed = _ask(gw, key, q, extra_headers={"x-frugate-cache-control": "no-cache"})
    assert refreshed.headers["x-frugate-cache"] == "miss" and _received(sim) == before + 1
    hot = _ask(gw, key, q, temperature=1.5)  # above the cache's max temperature
    assert hot.headers["x-frugate-cache"] == "bypass"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert _ask(gw, key, q, tools=tools).headers["x-frugate-cache"] == "bypass"


def test_tenants_never_share_entries(cached: tuple[GatewayServer, SimServer]) -> None:
    gw, _ = cached
    a, b = gw.make_key(tenant="c5a"), gw.make_key(tenant="c5b")
    q = f"What is the boiling point of water? {secrets.token_hex(3)}"
    _ask(gw, a, q)
    asyncio.run(asyncio.sleep(0.2))
    assert _ask(gw, a, q).headers["x-frugate-cache"] == "hit"
    assert _ask(gw, b, q).headers["x-frugate-cache"] == "miss"


def test_admin_purge(cached: tuple[GatewayServer, SimServer]) -> None:
    gw, _ = cached
    key = gw.make_key(tenant="c6")
    q = f"Spell 'gateway' backwards. {secrets.token_hex(3)}"
    _ask(gw, key, q)
    asyncio.run(asyncio.sleep(0.2))
    tenant = next(p.tenant_id for p in gw.state.directory.by_hash.values()
                  if gw.state.directory.tenants[p.tenant_id].name == "c6")
    r = httpx.delete(gw.url + f"/admin/cache?tenant={tenant}",
                     headers={"authorization": "Bearer fk-test-master"})
    assert r.status_code == 200 and r.json()["purged"] >= 1
    assert _ask(gw, key, q).headers["x-frugate-cache"] == "miss"


def test_two_gateways_share_hits_through_redis(tmp_path: Path) -> None:
    from tests.gateway.money import seed

    with SimServer(model="sim-small", profile="fast") as sim, fresh_postgres() as db:
        key, _ = asyncio.run(seed(db))
        cfg = {"database_url": db, "redis_url": REDIS_URL,
               "redis_prefix": "fgt-" + secrets.token_hex(4), "master_key": "fk-test-master",
               "pools": [{"name": "small", "model": "sim-small", "replicas": [sim.url]}],
               "logging": {"level": "WARNING"}}
        a = GatewayProcess(cfg, tmp_path / "a").start()
        b = GatewayProcess(cfg, tmp_path / "b").start()
        try:
            q = "Which planet has the most moons?"
            body = {"model": "small", "max_tokens": 12,
                    "messages": [{"role": "user", "content": q}]}
            hdr = {"authorization": f"Bearer {key}"}
            first = httpx.post(a.base_url + "/chat/completions", json=body, headers=hdr)
            assert first.headers["x-frugate-cache"] == "miss"
            seen = None
            for _ in range(50):  # B's local index follows the Redis stream
                asyncio.run(asyncio.sleep(0.1))
                r = httpx.post(b.base_url + "/chat/completions", json=body, headers=hdr)
                seen = r.headers["x-frugate-cache"]
                if seen == "hit":
                    break
            assert seen == "hit"
            para = {**body, "messages": [{"role": "user",
                                          "content": "Which planet has the largest number "
                                                     "of moons?"}]}
            r = httpx.post(b.base_url + "/chat/completions", json=para, headers=hdr)
            assert r.headers["x-frugate-cache"] in ("hit", "miss")  # verifier's call
        finally:
            a.stop()
            b.stop()
