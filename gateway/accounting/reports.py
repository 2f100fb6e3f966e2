"""Usage reports: SQL over the ledger (exact), or over its daily rollup where that is identical.

A report sums ledger rows in [start, end) grouped by any of tenant, team, key, model and day
(UTC). `model` is the served model, else the requested one (as in the rollup). Savings follow
the meter: `savings = baseline - cost`; of which `cache_savings` is max(0, baseline - cost) of
cache hits and `routing_savings` the same for requests a routing policy decided. The rest of
the savings comes from callers choosing a cheaper model themselves.

The rollup (`ledger_daily`) holds the same sums per (day, tenant, team, key, model), written in
the same transaction as the ledger rows, so it gives identical numbers whenever the range is
whole UTC days; `source="auto"` uses it then and the ledger otherwise.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import Date, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from gateway.accounting.prices import MICROS
from gateway.errors import InvalidRequest
from gateway.storage.models import ApiKey, DailyRollup, LedgerEntry, Team, Tenant

DIMENSIONS = ("tenant", "team", "key", "model", "day")
MEASURES = ("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens",
            "cost_micros", "baseline_micros", "cache_savings_micros", "routing_savings_micros")
MONEY = ("cost", "baseline", "savings", "cache_savings", "routing_savings")
Source = Literal["auto", "ledger", "rollup"]


@dataclass(frozen=True)
class ReportQuery:
    start: datetime
    end: datetime  # exclusive
    group_by: tuple[str, ...] = ("team", "model")
    tenant_id: str | None = None
    team_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    source: Source = "auto"

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise InvalidRequest("'to' must be after 'from'.", param="to")

    @property
    def whole_days(self) -> bool:
        return all(t.timetz().replace(tzinfo=None) == time(0) for t in (self.start, self.end))


@dataclass
class Report:
    query: ReportQuery
    source: Literal["ledger", "rollup"]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(MEASURES, 0)
        for r in self.rows:
            for m in MEASURES:
                out[m] += r[m]
        return with_usd(out)


def parse_time(text: str | None, default: datetime, param: str) -> datetime:
    """An ISO date or datetime; naive means UTC. Returned in UTC."""
    if text is None or text == "":
        return default
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), UTC)
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"Invalid value for '{param}': expected an ISO date or datetime "
                             f"(got {text[:40]!r}).", param=param, code="invalid_value") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_group_by(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ("team", "model")
    parts = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [p for p in parts if p not in DIMENSIONS]
    if bad:
        raise InvalidRequest(f"Invalid value for 'group_by': {', '.join(bad)} (use any of "
                             f"{', '.join(DIMENSIONS)}).", param="group_by", code="invalid_value")
    return parts


def default_range(now: datetime) -> tuple[datetime, datetime]:
    """This calendar month so far, including today."""
    today = datetime.combine(now.astimezone(UTC).date(), time(0), UTC)
    return today.replace(day=1), today + timedelta(days=1)


async def usage_report(s: AsyncSession, q: ReportQuery) -> Report:
    use_rollup = q.source == "rollup" or (q.source == "auto" and q.whole_days)
    if q.source == "rollup" and not q.whole_days:
        raise InvalidRequest("The rollup only answers whole UTC days: give 'from' and 'to' "
                             "as dates.", param="source")
    rows = await (_from_rollup(s, q) if use_rollup else _from_ledger(s, q))
    await _label(s, rows)
    return Report(q, "rollup" if use_rollup else "ledger", [with_usd(r) for r in rows])


async def _from_ledger(s: AsyncSession, q: ReportQuery) -> list[dict[str, Any]]:
    t = LedgerEntry
    saved = case((t.baseline_micros > t.cost_micros, t.baseline_micros - t.cost_micros), else_=0)
    hit = t.cache_status == "hit"
    dims: dict[str, Any] = {
        "tenant": t.tenant_id, "team": t.team_id, "key": t.key_id,
        "model": func.coalesce(t.served_model, t.requested_model),
        "day": _utc_day(s, t.ts),
    }
    measures: dict[str, ColumnElement[Any]] = {
        "requests": func.count(),
        "errors": func.sum(case((t.status != "ok", 1), else_=0)),
        "cache_hits": func.sum(case((hit, 1), else_=0)),
        "prompt_tokens": func.sum(t.prompt_tokens),
        "completion_tokens": func.sum(t.completion_tokens),
        "cost_micros": func.sum(t.cost_micros),
        "baseline_micros": func.sum(t.baseline_micros),
        "cache_savings_micros": func.sum(case((hit, saved), else_=0)),
        "routing_savings_micros": func.sum(
            case((~hit & t.route_decision.is_not(None), saved), else_=0)),
    }
    where = [t.ts >= q.start, t.ts < q.end]
    return await _run(s, q, dims, measures, where)


async def _from_rollup(s: AsyncSession, q: ReportQuery) -> list[dict[str, Any]]:
    t = DailyRollup
    dims: dict[str, Any] = {
        "tenant": t.tenant_id, "team": t.team_id, "key": t.key_id, "model": t.model, "day": t.day}
    measures: dict[str, ColumnElement[Any]] = {m: func.sum(getattr(t, m)) for m in MEASURES}
    where = [t.day >= q.start.date(), t.day < q.end.date()]
    return await _run(s, q, dims, measures, where)


async def _run(s: AsyncSession, q: ReportQuery, dims: dict[str, Any],
               measures: dict[str, ColumnElement[Any]],
               where: list[ColumnElement[bool]]) -> list[dict[str, Any]]:
    for name, value in (("tenant", q.tenant_id), ("team", q.team_id), ("key", q.key_id),
                        ("model", q.model)):
        if value is not None:
            where.append(dims[name] == value)
    group = [dims[d].label(d) for d in q.group_by]
    stmt = select(*group, *(v.label(k) for k, v in measures.items())).where(*where)
    if group:
        stmt = stmt.group_by(*(dims[d] for d in q.group_by)).order_by(
            *(dims[d] for d in q.group_by))
    out = []
    for row in (await s.execute(stmt)).mappings():
        r = {d: row[d] for d in q.group_by}
        if "day" in r and r["day"] is not None:
            r["day"] = str(r["day"])[:10]
        r.update({m: int(row[m] or 0) for m in MEASURES})
        if r["requests"]:
            out.append(r)
    return out


def _utc_day(s: AsyncSession, ts: Any) -> ColumnElement[Any]:
    if s.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", ts), Date)
    return func.date(ts)  # SQLite stores the UTC wall clock


async def _label(s: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add names next to ids: tenant and team names, the key's prefix and name."""
    for dim, model, cols in (("tenant", Tenant, ("name",)), ("team", Team, ("name",)),
                             ("key", ApiKey, ("prefix", "name"))):
        ids = {r[dim] for r in rows if dim in r}
        names: dict[str, Any] = {}
        if ids:
            q = select(model.id, *(getattr(model, c) for c in cols)).where(model.id.in_(ids))
            names = {row[0]: row[1:] for row in (await s.execute(q)).all()}
        for r in rows:
            if dim not in r:
                continue
            ident = r.pop(dim)
            r[f"{dim}_id"] = ident
            found = names.get(ident)
            if dim == "key":
                r["key_prefix"], r["key_name"] = found if found else (None, None)
            else:
                r[dim] = found[0] if found else None


def with_usd(r: dict[str, Any]) -> dict[str, Any]:
    r["savings_micros"] = r["baseline_micros"] - r["cost_micros"]
    for m in MONEY:
        r[f"{m}_usd"] = r[f"{m}_micros"] / MICROS
    return r


async def request_team(s: AsyncSession, request_id: str) -> str | None:
    """The team a ledger row belongs to (None when there is no such row yet)."""
    q = select(LedgerEntry.team_id).where(LedgerEntry.request_id == request_id)
    return (await s.execute(q)).scalar_one_or_none()


def csv_columns(group_by: Sequence[str]) -> list[str]:
    labels = {"tenant": ["tenant_id", "tenant"], "team": ["team_id", "team"],
              "key": ["key_id", "key_prefix", "key_name"], "model": ["model"], "day": ["day"]}
    cols = [c for d in group_by for c in labels[d]]
    cols += [m for m in MEASURES if not m.endswith("_micros")]
    for m in MONEY:
        cols += [f"{m}_usd", f"{m}_micros"]
    return cols


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_columns(report.query.group_by),
                            extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in report.rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()
