"""Admission semantics, identical for the in-process and the Redis (Lua) implementations."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from gateway.accounting.admission import Admission, make_plan
from gateway.accounting.memory import MemoryAdmission
from gateway.accounting.periods import period_tag
from gateway.accounting.redis_admission import RedisAdmission
from gateway.errors import BudgetExceeded, RateLimited
from gateway.state import connect_redis
from gateway.tenancy.directory import BudgetRule, Principal

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
async def admission(request: pytest.FixtureRequest) -> AsyncIterator[Admission]:
    if request.param == "memory":
        yield MemoryAdmission(hold_ttl_s=0.5)
        return
    client = connect_redis(REDIS_URL)
    adm = RedisAdmission(client, prefix="fgtest-" + secrets.token_hex(4), hold_ttl_s=1)
    try:
        yield adm
    finally:
        await adm.close()
        await client.aclose()


def principal(**kw: object) -> Principal:
    uid = secrets.token_hex(4)  # fresh ids: tests never share Redis counters
    base: dict[str, object] = {"key_id": f"k{uid}", "team_id": f"tm{uid}",
                               "tenant_id": f"tn{uid}", "prefix": "fk-x..."}
    return Principal(**{**base, **kw})  # type: ignore[arg-type]


def rules(p: Principal, **limits: int) -> list[BudgetRule]:
    out = []
    for scope, sid in (("key", p.key_id), ("team", p.team_id), ("tenant", p.tenant_id)):
        if scope in limits:
            out.append(BudgetRule(scope, sid, limits[scope], None, "day", 80))
    return out


async def admit(a: Admission, p: Principal, rs: list[BudgetRule], micros: int,
                tokens: int = 10, now: datetime | None = None):  # type: ignore[no-untyped-def]
    plan = make_plan(p, rs, "req_" + secrets.token_hex(6), micros, tokens,
                     now or datetime.now(UTC))
    return await a.admit(plan)


async def test_budget_holds_and_refuses(admission: Admission) -> None:
    p = principal()
    rs = rules(p, team=1000)
    t1 = await admit(admission, p, rs, 600)
    with pytest.raises(BudgetExceeded) as info:
        await admit(admission, p, rs, 600)  # 600 held + 600 > 1000
    assert info.value.status_code == 429 and info.value.type == "budget_exceeded"
    assert "team" in info.value.message and info.value.retry_after
    # Settling for less frees the rest of the hold.
    await admission.settle(t1, 100, 5)
    t2 = await admit(admission, p, rs, 600)
    await admission.settle(t2, 600, 5)
    tag = period_tag("day", datetime.now(UTC))
    spent, held, tokens = await admission.usage("team", p.team_id, tag, p.tenant_id)
    assert (spent, held, tokens) == (700, 0, 10)


async def test_every_scope_is_checked(admission: Admission) -> None:
    p = principal()
    rs = rules(p, key=10_000, team=10_000, tenant=150)
    await admit(admission, p, rs, 100)
    with pytest.raises(BudgetExceeded) as info:
        await admit(admission, p, rs, 100)
    assert "tenant" in info.value.message


async def test_refusal_changes_nothing(admission: Admission) -> None:
    p = principal(key_rpm=100)
    rs = rules(p, key=500, team=100)
    with pytest.raises(BudgetExceeded):
        await admit(admission, p, rs, 200)  # fits the key budget, not the team's
    tag = period_tag("day", datetime.now(UTC))
    assert await admission.usage("key", p.key_id, tag, p.tenant_id) == (0, 0, 0)
    for _ in range(100):  # the refused request did not use up a request of the key's RPM
        await admit(admission, p, [], 1)


async def test_settle_is_idempotent_and_reports_soft_limit(admission: Admission) -> None:
    p = principal()
    rs = rules(p, key=1000)  # soft limit at 80% = 800
    t = await admit(admission, p, rs, 900)
    s1 = await admission.settle(t, 850, 1)
    s2 = await admission.settle(t, 850, 1)
    assert [c.scope for c in s1.crossings] == ["key"] and s2.crossings == []
    tag = period_tag("day", datetime.now(UTC))
    assert (await admission.usage("key", p.key_id, tag, p.tenant_id))[0] == 850


async def test_expired_hold_is_released(admission: Admission) -> None:
    p = principal()
    rs = rules(p, key=1000)
    await admit(admission, p, rs, 900)  # never settled: its gateway "crashed"
    with pytest.raises(BudgetExceeded):
        await admit(admission, p, rs, 900)
    await asyncio.sleep(1.3)
    t = await admit(admission, p, rs, 900)  # the stale hold expired
    await admission.settle(t, 900, 1)


async def test_rpm_and_tpm(admission: Admission) -> None:
    p = principal(key_rpm=5, team_tpm=100)
    for _ in range(5):
        await admit(admission, p, [], 1, tokens=10)
    with pytest.raises(RateLimited) as info:
        await admit(admission, p, [], 1, tokens=10)
    assert info.value.type == "rate_limit_exceeded" and info.value.retry_after >= 1
    q = principal(team_tpm=100)
    await admit(admission, q, [], 1, tokens=60)
    with pytest.raises(RateLimited) as info2:
        await admit(admission, q, [], 1, tokens=60)
    assert "tokens per minute" in info2.value.message


async def test_period_rolls_over_at_utc_midnight(admission: Admission) -> None:
    p = principal()
    today = datetime.now(UTC)
    rs = rules(p, key=100)
    t = await admit(admission, p, rs, 100, now=today)
    await admission.settle(t, 100, 1)
    with pytest.raises(BudgetExceeded):
        await admit(admission, p, rs, 1, now=today)
    tomorrow = today + timedelta(days=1)
    t2 = await admit(admission, p, rs, 100, now=tomorrow)  # a fresh day, a fresh budget
    await admission.settle(t2, 100, 1)


async def test_concurrent_admissions_never_overspend(admission: Admission) -> None:
    p = principal()
    rs = rules(p, team=5_000)

    async def one() -> int:
        try:
            t = await admit(admission, p, rs, 100)
        except BudgetExceeded:
            return 0
        await asyncio.sleep(0.01)
        await admission.settle(t, 100, 1)
        return 100

    spent = sum(await asyncio.gather(*(one() for _ in range(200))))
    assert spent <= 5_000
    tag = period_tag("day", datetime.now(UTC))
    assert (await admission.usage("team", p.team_id, tag, p.tenant_id))[0] == spent
