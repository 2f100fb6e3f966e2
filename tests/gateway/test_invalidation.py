"""Live invalidation: admin changes reach another replica within a second (real Redis)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.storage import connect, create_schema
from gateway.tenancy import Directory, admin
from gateway.tenancy.invalidation import Invalidator
from tests.gateway.admin_support import (
    BACKENDS,
    REDIS_URL,
    admin_client,
    database_url,
    key_client,
    new_key,
    new_team,
    ok,
)
from tests.gateway.harness import GatewayServer, pool, settings_for

LIMIT_S = 1.0


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until `check()` holds (fails the test after `timeout`)."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture(scope="module", params=BACKENDS)
def replicas(request: pytest.FixtureRequest, embedder: Any,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayServer]]:
    """Two gateways over one database and one Redis, as two replicas behind a balancer."""
    data = tmp_path_factory.mktemp("replicas")
    prefix = f"frugate-test-{secrets.token_hex(4)}"
    with database_url(request.param, data) as url:
        settings = settings_for([pool("small", "http://127.0.0.1:9")], data, database_url=url,
                                redis_url=REDIS_URL, redis_prefix=prefix)
        with GatewayServer(settings, embedder) as a, GatewayServer(settings, embedder) as b:
            for gw in (a, b):
                gw.call(asyncio.wait_for(gw.state.invalidator.subscribed.wait(), 10))
            yield [a, b]


def test_revocation_reaches_the_other_replica_within_a_second(
        replicas: list[GatewayServer]) -> None:
    a, b = replicas
    with admin_client(a) as adm:
        _, team = new_team(adm)
        key = new_key(adm, team)
        with key_client(b, key["key"]) as on_b:
            assert wait_for(lambda: on_b.get("/v1/models").status_code == 200) < LIMIT_S
            ok(adm.post(f"/admin/keys/{key['id']}/revoke"))
            took = wait_for(lambda: on_b.get("/v1/models").status_code == 401)
    assert took < LIMIT_S


def test_budgets_limits_and_prices_reach_the_other_replica(
        replicas: list[GatewayServer]) -> None:
    a, b = replicas
    directory = b.state.directory
    with admin_client(a) as adm:
        _, team = new_team(adm)
        key = new_key(adm, team)
        ok(adm.put(f"/admin/teams/{team}/budget", json={"limit_usd": 3, "period": "week"}))
        assert wait_for(lambda: ("team", team) in directory.budgets) < LIMIT_S
        assert directory.budgets[("team", team)].limit_micros == 3_000_000
        # Spend comes from the Redis counters here (no request yet: zero).
        current = ok(adm.get(f"/admin/teams/{team}/budget"))["current"]
        assert (current["spent_micros"], current["held_micros"]) == (0, 0)

        ok(adm.put(f"/admin/teams/{team}/limits", json={"rpm": 7}))

        def team_rpm() -> int | None:
            p = next((p for p in directory.by_hash.values() if p.key_id == key["id"]), None)
            return p.team_rpm if p else None

        assert wait_for(lambda: team_rpm() == 7) < LIMIT_S
        ok(adm.put("/admin/prices/small", json={"input": 0.3, "output": 0.9}))
        assert wait_for(lambda: b.state.meter.price("small").output == 900_000) < LIMIT_S
        ok(adm.delete(f"/admin/teams/{team}/budget"))
        assert wait_for(lambda: ("team", team) not in directory.budgets) < LIMIT_S
    assert b.state.invalidator.received >= 4


# The invalidator on its own: resubscribing after Redis drops it, and the periodic reload.

@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine, maker = connect(f"sqlite+aiosqlite:///{tmp_path / 'inv.db'}")
    await create_schema(engine)
    yield maker
    await engine.dispose()


async def _new_key(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    async with sessions() as s, s.begin():
        tenant = await admin.create_tenant(s, f"t-{secrets.token_hex(4)}")
        team = await admin.create_team(s, tenant.id, "ml")
        new = await admin.create_key(s, team.id)
    return new.row.id, new.row.key_hash


async def _revoke(sessions: async_sessionmaker[AsyncSession], key_id: str) -> None:
    async with sessions() as s, s.begin():
        await admin.revoke_key(s, key_id)


async def _until(check: Callable[[], bool], limit_s: float = 5.0) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < limit_s, "condition not met in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_subscriber_survives_a_dropped_connection(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    channel = f"frugate-test-{secrets.token_hex(4)}:invalidate"
    pub = Invalidator(Directory(sessions), redis_url=REDIS_URL, channel=channel)
    sub_dir = Directory(sessions)
    sub = Invalidator(sub_dir, redis_url=REDIS_URL, channel=channel, retry_max_s=0.2)
    sub.start()
    control = aioredis.from_url(REDIS_URL)
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 5)
        key_id, key_hash = await _new_key(sessions)
        await pub.publish("key", key_id)
        assert await _until(lambda: sub_dir.lookup(key_hash) is not None) < LIMIT_S

        # Drop the subscriber's connections, as a Redis restart would.
        name = f"frugate-invalidator-{sub.origin}"
        clients = await control.client_list()
        ours = [c for c in clients if c.get("name") == name]
        assert ours
        for c in ours:
            await control.client_kill_filter(_id=c["id"])
        await _revoke(sessions, key_id)  # a change published while it may not be listening
        await pub.publish("key", key_id)
        assert await _until(lambda: sub_dir.lookup(key_hash) is None) < 3.0
        await asyncio.wait_for(sub.subscribed.wait(), 5)

        key2, hash2 = await _new_key(sessions)  # and it still hears new messages
        await pub.publish("key", key2)
        assert await _until(lambda: sub_dir.lookup(hash2) is not None) < LIMIT_S
    finally:
        await sub.stop()
        await pub.stop()
        await control.aclose()


async def test_periodic_full_reload_catches_unpublished_changes(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    directory = Directory(sessions)
    inv = Invalidator(directory, full_reload_s=0.1)  # no Redis: local only
    key_id, key_hash = await _new_key(sessions)
    await inv.publish("key", key_id)  # applied here at once
    assert directory.lookup(key_hash) is not None
    inv.start()
    try:
        await _revoke(sessions, key_id)  # nobody publishes this one
        assert await _until(lambda: directory.lookup(key_hash) is None) < 1.0
    finally:
        await inv.stop()
    with pytest.raises(ValueError, match="unknown invalidation kind"):
        await inv.publish("colour", "x")
