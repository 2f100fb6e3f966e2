"""Admission: rate limits and budget reservations over key, team and tenant in one step.

Both implementations (in-process for the embedded default, Redis Lua at scale) take the same
`Plan` and follow the same rules:
- a request is admitted only if, for every budget, spent + held + estimate <= limit, and every
  RPM/TPM sliding window has room; otherwise nothing is changed;
- admission holds the estimate on every budget until settlement replaces it with the actual
  cost; holds expire after `hold_ttl_s` so a crashed gateway cannot pin a budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from gateway.accounting.periods import period_bounds
from gateway.errors import BudgetExceeded, RateLimited
from gateway.tenancy.directory import BudgetRule, Principal

T = TypeVar("T")

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Hold:
    scope: str
    scope_id: str
    tag: str  # budget period tag, e.g. d20261128
    limit_micros: int | None
    limit_tokens: int | None
    retry_after_s: float  # until the period resets (for the 429)
    soft_limit_pct: int | None = None


@dataclass(frozen=True, slots=True)
class Rate:
    scope: str
    scope_id: str
    unit: str  # rpm | tpm
    limit: int


@dataclass(slots=True)
class Plan:
    """Everything one admission checks and changes; built without I/O."""

    tenant_id: str
    request_id: str
    micros: int
    tokens: int
    holds: list[Hold] = field(default_factory=list)
    rates: list[Rate] = field(default_factory=list)


@dataclass(slots=True)
class Ticket:
    plan: Plan
    settled: bool = False
    window: int | None = None  # the rate window admission counted in (Redis)
    degraded: bool = False  # admitted without counters (Redis down, fail-open)


@dataclass(frozen=True, slots=True)
class Crossing:
    """A budget whose spend crossed its soft limit with this settlement."""

    scope: str
    scope_id: str
    tag: str
    spent_micros: int
    limit_micros: int


@dataclass(frozen=True, slots=True)
class Settled:
    crossings: list[Crossing]
    recorded: bool = False


class Admission(Protocol):
    # True when settle() delivers ledger events durably itself (Redis Stream).
    durable_events: bool

    async def admit(self, plan: Plan) -> Ticket: ...

    def settle(self, ticket: Ticket, micros: int, tokens: int,
               event: bytes | None = None) -> Awaitable[Settled]:
        """Replace the hold with the actual cost; `event` is the ledger record, which an
        implementation may deliver durably itself (then `Settled.recorded` is True).

        The settlement is applied, or sent to the shared store, before this returns, so
        anything the caller does next comes after it; the awaitable gives the outcome."""
        ...

    async def usage(self, scope: str, scope_id: str, tag: str,
                    tenant_id: str) -> tuple[int, int, int]:
        """(spent micros, held micros, spent tokens) of one budget period."""
        ...

    async def close(self) -> None: ...


def make_plan(p: Principal, rules: list[BudgetRule], request_id: str, micros: int, tokens: int,
              now: datetime) -> Plan:
    plan = Plan(p.tenant_id, request_id, micros, tokens)
    for r in rules:
        if r.limit_micros is None and r.limit_tokens is None:
            continue
        tag, end = period_bounds(r.period, now)
        retry = (end - now).total_seconds() if end is not None else 86400.0
        plan.holds.append(Hold(r.scope, r.scope_id, tag, r.limit_micros, r.limit_tokens, retry,
                               r.soft_limit_pct))
    for scope, sid, unit, limit in (("key", p.key_id, "rpm", p.key_rpm),
                                    ("key", p.key_id, "tpm", p.key_tpm),
                                    ("team", p.team_id, "rpm", p.team_rpm),
                                    ("team", p.team_id, "tpm", p.team_tpm)):
        if limit is not None:
            plan.rates.append(Rate(scope, sid, unit, limit))
    return plan


def window_count(prev: float, cur: float, elapsed_frac: float) -> float:
    """Sliding-window estimate from the previous and current fixed windows."""
    return prev * (1.0 - elapsed_frac) + cur


def rate_retry_after(prev: float, cur: float, need: float, limit: int,
                     elapsed_frac: float) -> float:
    """Seconds until `need` more fits in the window (at least 1)."""
    if cur + need > limit or prev <= 0:
        return max(1.0, (1.0 - elapsed_frac) * WINDOW_S)
    frac = 1.0 - (limit - cur - need) / prev
    return max(1.0, (frac - elapsed_frac) * WINDOW_S)


def budget_error(hold: Hold) -> BudgetExceeded:
    what = "spend" if hold.limit_micros is not None else "token"
    return BudgetExceeded(
        f"The {hold.scope} '{hold.scope_id}' has reached its {what} budget for this period.",
        retry_after=hold.retry_after_s)


def rate_error(rate: Rate, retry_after: float) -> RateLimited:
    what = "requests" if rate.unit == "rpm" else "tokens"
    return RateLimited(
        f"Rate limit reached for {rate.scope} '{rate.scope_id}': {rate.limit} {what} per minute.",
        retry_after=retry_after)


def resolved(value: T) -> asyncio.Future[T]:
    """An awaitable that is already done: a settlement applied in-process."""
    fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut
