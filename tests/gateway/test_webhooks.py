"""Soft-limit webhooks: signed, retried, once per (scope, id, period), even across replicas."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounting.admission import Crossing
from gateway.accounting.webhooks import SIGNATURE_HEADER, WebhookNotifier, period_of, verify
from gateway.storage import connect, create_schema
from gateway.storage.models import SoftLimitNotice
from gateway.tenancy import BudgetRule, Directory
from tests.gateway.admin_support import (
    BACKENDS,
    Receiver,
    admin_client,
    database_url,
    gateway_settings,
    key_client,
    new_key,
    new_team,
    ok,
)
from tests.gateway.harness import GatewayServer, free_port
from workers.sim.process import SimServer

SECRET = "whsec-test"
CROSSING = Crossing("team", "team_1", "d20261128", spent_micros=8_100_000,
                    limit_micros=10_000_000)


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[str]:
    with database_url(request.param, tmp_path_factory.mktemp("hooks")) as url:
        yield url


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine, maker = connect(db_url)
    await create_schema(engine)
    async with engine.begin() as conn:  # each test starts with no notices
        await conn.execute(SoftLimitNotice.__table__.delete())
    yield maker
    await engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def directory_with(url: str | None) -> Directory:
    d = Directory()
    d.budgets[("team", "team_1")] = BudgetRule("team", "team_1", 10_000_000, None, "day", 80, url)
    return d


async def notifier(sessions: async_sessionmaker[AsyncSession], url: str | None,
                   **opts: Any) -> WebhookNotifier:
    n = WebhookNotifier(sessions, directory_with(url), SECRET, backoff_s=0.01, **opts)
    n.start()
    return n


async def notices(sessions: async_sessionmaker[AsyncSession]) -> list[SoftLimitNotice]:
    async with sessions() as s:
        return list((await s.scalars(select(SoftLimitNotice))).all())


async def test_sent_once_signed_even_from_two_replicas(
        sessions: async_sessionmaker[AsyncSession], receiver: Receiver) -> None:
    a = await notifier(sessions, receiver.url)
    b = await notifier(sessions, receiver.url)
    try:
        for n in (a, b, a):
            n.on_crossing(CROSSING)
        await a.drain()
        await b.drain()
    finally:
        await a.stop()
        await b.stop()
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert verify(SECRET, body, headers[SIGNATURE_HEADER.lower()])
    assert not verify("another-secret", body, headers[SIGNATURE_HEADER.lower()])
    event = json.loads(body)
    assert event["event"] == "budget.soft_limit"
    assert (event["scope"], event["scope_id"], event["period"]) == ("team", "team_1", "day")
    assert event["period_start"] == "2026-11-28T00:00:00+00:00"
    assert (event["spent_usd"], event["limit_usd"], event["pct"]) == (8.1, 10.0, 80)
    assert event["spent_pct"] == 81.0 and event["ts"]
    [notice] = await notices(sessions)
    assert notice.attempts == 1 and notice.sent_at is not None


async def test_retried_with_backoff_until_accepted(
        sessions: async_sessionmaker[AsyncSession], receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    n = await notifier(sessions, receiver.url)
    try:
        started = time.monotonic()
        assert await n.deliver(CROSSING)
        elapsed = time.monotonic() - started
    finally:
        await n.stop()
    assert len(receiver.received) == 3
    assert elapsed >= 0.01 + 0.02  # two backoff sleeps, doubling
    assert len({body for _, body in receiver.received}) == 1  # the same event each time
    [notice] = await notices(sessions)
    assert notice.attempts == 3 and notice.sent_at is not None


async def test_gives_up_after_its_attempts_and_never_resends(
        sessions: async_sessionmaker[AsyncSession], receiver: Receiver) -> None:
    receiver.statuses = [500] * 10
    n = await notifier(sessions, receiver.url, attempts=3)
    try:
        assert not await n.deliver(CROSSING)
        assert not await n.deliver(CROSSING)  # already claimed for this period
    finally:
        await n.stop()
    assert len(receiver.received) == 3
    [notice] = await notices(sessions)
    assert notice.attempts == 3 and notice.sent_at is None


async def test_a_new_period_sends_again_and_no_url_sends_nothing(
        sessions: async_sessionmaker[AsyncSession], receiver: Receiver) -> None:
    n = await notifier(sessions, receiver.url)
    silent = await notifier(sessions, None)
    try:
        assert await n.deliver(CROSSING)
        next_day = Crossing("team", "team_1", "d20261129", 8_000_000, 10_000_000)
        assert await n.deliver(next_day)
        assert not await silent.deliver(Crossing("team", "team_1", "d20261130", 1, 2))
    finally:
        await n.stop()
        await silent.stop()
    assert [json.loads(b)["period_start"][:10] for _, b in receiver.received] == [
        "2026-11-28", "2026-11-29"]
    assert len(await notices(sessions)) == 2


async def test_unreachable_receiver_is_retried_then_abandoned(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    n = await notifier(sessions, f"http://127.0.0.1:{free_port()}/hook", attempts=2)
    try:
        assert not await n.deliver(CROSSING)
    finally:
        await n.stop()
    [notice] = await notices(sessions)
    assert notice.attempts == 2 and notice.sent_at is None


def test_period_tags_decode() -> None:
    assert period_of("w20261123")[0] == "week"
    assert period_of("m20261101")[1].isoformat() == "2026-11-01T00:00:00+00:00"
    assert period_of("t19700101")[0] == "total"


def test_gateway_fires_the_soft_limit_webhook_once(
        sims: dict[str, SimServer], embedder: Any, tmp_path: Path, receiver: Receiver) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'frugate.db'}"
    settings = gateway_settings({k: s.url for k, s in sims.items()}, tmp_path, url,
                                webhook_secret=SECRET)
    with GatewayServer(settings, embedder) as gw, admin_client(gw) as admin:
        _, team = new_team(admin)
        key = new_key(admin, team)
        # 1000 micro-dollars a day; the soft limit (2%) is crossed by the first request or two.
        ok(admin.put(f"/admin/teams/{team}/budget", json={
            "limit_usd": 0.001, "period": "day", "soft_limit_pct": 2,
            "webhook_url": receiver.url}))
        with key_client(gw, key["key"]) as c:
            for _ in range(4):
                r = c.post("/v1/chat/completions", json={
                    "model": "gpt-4o-mini", "max_tokens": 6,
                    "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200, r.text
        gw.call(gw.state.webhooks.drain())
        spent = ok(admin.get(f"/admin/teams/{team}/budget"))["current"]["spent_micros"]
    assert spent >= 20
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert verify(SECRET, body, headers["x-frugate-signature"])
    event = json.loads(body)
    assert (event["scope"], event["scope_id"], event["pct"]) == ("team", team, 2)
    assert 20 <= event["spent_micros"] <= spent and event["limit_micros"] == 1000
