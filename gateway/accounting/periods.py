"""Calendar-aligned UTC budget periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Literal

Period = Literal["day", "week", "month", "total"]
PERIODS: tuple[Period, ...] = ("day", "week", "month", "total")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def period_start(period: Period, now: datetime) -> datetime:
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":  # ISO weeks start on Monday
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return _EPOCH


def period_end(period: Period, now: datetime) -> datetime | None:
    start = period_start(period, now)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    if period == "month":
        return (start + timedelta(days=32)).replace(day=1)
    return None


def period_tag(period: Period, now: datetime) -> str:
    """A short stable name for the period containing `now` (used in counter keys)."""
    start = period_start(period, now)
    return {"day": "d", "week": "w", "month": "m", "total": "t"}[period] + start.strftime("%Y%m%d")


@lru_cache(maxsize=64)
def _bounds(period: Period, day: date) -> tuple[str, datetime | None]:
    now = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return period_tag(period, now), period_end(period, now)


def period_bounds(period: Period, now: datetime) -> tuple[str, datetime | None]:
    """(tag, end) of the period containing `now` — cached per day (the hot path calls it)."""
    return _bounds(period, now.astimezone(UTC).date())
