"""Budget periods: calendar-aligned UTC resets and once-per-period soft-limit crossings.

Admission takes the clock as an argument (`make_plan(..., now=...)`), so moving time is just
building the plan with another `now`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.accounting.admission import make_plan
from gateway.accounting.memory import MemoryAdmission
from gateway.accounting.periods import Period, period_end, period_start, period_tag
from gateway.errors import BudgetExceeded
from gateway.tenancy import BudgetRule, Principal

P = Principal(key_id="key_1", tenant_id="ten_1", team_id="team_1", prefix="fk-abcd...")


def rule(period: Period, limit: int = 1000, soft: int | None = None) -> list[BudgetRule]:
    return [BudgetRule("team", "team_1", limit, None, period, soft, None)]


async def spend(adm: MemoryAdmission, period: Period, now: datetime, micros: int,
                n: list[int], soft: int | None = None) -> list[object]:
    n[0] += 1
    ticket = await adm.admit(make_plan(P, rule(period, soft=soft), f"r{n[0]}", micros, 1, now))
    return list((await adm.settle(ticket, micros, 1)).crossings)


@pytest.mark.parametrize(("period", "last", "first_of_next"), [
    ("day", datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC), datetime(2026, 11, 29, tzinfo=UTC)),
    # 2026-11-29 is a Sunday: ISO weeks start on Monday.
    ("week", datetime(2026, 11, 29, 23, 59, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),
    ("month", datetime(2026, 2, 28, 22, 0, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
    ("month", datetime(2026, 12, 31, 23, 0, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
])
async def test_an_exhausted_budget_admits_again_when_its_period_resets(
        period: Period, last: datetime, first_of_next: datetime) -> None:
    adm, n = MemoryAdmission(), [0]
    await spend(adm, period, last, 1000, n)
    with pytest.raises(BudgetExceeded) as exc:
        await spend(adm, period, last, 1, n)
    # Retry-After points at the reset.
    assert exc.value.retry_after == pytest.approx((first_of_next - last).total_seconds())
    await spend(adm, period, first_of_next, 1000, n)  # a fresh period: the full limit again
    with pytest.raises(BudgetExceeded):
        await spend(adm, period, first_of_next + timedelta(seconds=1), 1, n)
    assert await adm.usage("team", "team_1", period_tag(period, last)) == (1000, 0, 1)
    assert await adm.usage("team", "team_1", period_tag(period, first_of_next)) == (1000, 0, 1)


async def test_a_total_budget_never_resets() -> None:
    adm, n = MemoryAdmission(), [0]
    await spend(adm, "total", datetime(2026, 1, 1, tzinfo=UTC), 1000, n)
    with pytest.raises(BudgetExceeded):
        await spend(adm, "total", datetime(2031, 6, 1, tzinfo=UTC), 1, n)


async def test_the_soft_limit_is_crossed_once_per_period() -> None:
    adm, n = MemoryAdmission(), [0]
    day1 = datetime(2026, 11, 28, 9, tzinfo=UTC)
    day2 = day1 + timedelta(days=1)
    assert await spend(adm, "day", day1, 700, n, soft=80) == []
    [crossed] = await spend(adm, "day", day1, 150, n, soft=80)
    assert (crossed.tag, crossed.spent_micros, crossed.limit_micros) == ("d20261128", 850, 1000)
    assert await spend(adm, "day", day1, 100, n, soft=80) == []  # already past it
    [again] = await spend(adm, "day", day2, 900, n, soft=80)
    assert again.tag == "d20261129"


def test_period_boundaries_are_calendar_aligned_utc() -> None:
    now = datetime(2026, 11, 28, 13, 30, tzinfo=UTC)
    assert period_start("week", now) == datetime(2026, 11, 23, tzinfo=UTC)
    assert period_end("month", now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_end("total", now) is None
    # A local time just after midnight in UTC+2 is still the previous UTC day.
    from datetime import timezone

    local = datetime(2026, 11, 29, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert period_tag("day", local) == "d20261128"
