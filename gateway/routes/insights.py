"""Read-only figures for the dashboard that the usage report does not carry.

- `GET /admin/insights/pools` (master key): replica health and speculative-decoding acceptance,
  read from the gateway's own view of its pools (the same numbers as `/metrics`).
- `GET /admin/insights/routing` (master key) and `GET /v1/insights/routing` (a team's key, its
  own team only): requests per pool, and how many of them a routing policy decided.
- `GET /v1/insights/budget` (a team's key): its team's budget with the current period's spend,
  the same answer as `GET /admin/teams/{id}/budget` gives the master key.
- `GET /v1/insights/whoami` (either key): which kind of key this is, and for a team's key its
  team, so a client can pick its view without provoking a 403.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import case, func, select

from gateway.accounting.reports import ReportQuery, default_range, parse_time
from gateway.errors import AuthenticationFailed
from gateway.protocol.admin import BudgetOut
from gateway.routes.admin import budget_out, require_master
from gateway.routes.common import StateDep
from gateway.routes.usage import FromQ, PrincipalDep, ToQ, bearer_scheme, catch_up
from gateway.state import State
from gateway.storage.models import LedgerEntry, Team, Tenant
from gateway.tenancy import admin, authenticate, authenticate_master
from gateway.upstream import Pool

_ERR = {"description": "OpenAI-style error: {\"error\": {message, type, param, code}}"}
admin_router = APIRouter(prefix="/admin/insights", tags=["insights"],
                         dependencies=[Depends(require_master)],
                         responses={400: _ERR, 401: _ERR, 403: _ERR, 404: _ERR})
team_router = APIRouter(prefix="/v1/insights", tags=["insights"],
                        responses={400: _ERR, 401: _ERR, 404: _ERR})


# Wire models ---------------------------------------------------------------------------------

class ReplicaHealth(BaseModel):
    url: str
    up: bool
    speculative: bool
    in_flight: int
    waiting: float
    running: float
    kv_cache_usage: float
    prefix_cache_hit_rate: float | None
    failures: int
    ejections: int
    last_error: str | None
    scraped_s_ago: float | None


class Speculation(BaseModel):
    drafts: float
    draft_tokens: float
    accepted_tokens: float
    acceptance_rate: float | None  # accepted / proposed draft tokens
    mean_accepted_length: float | None  # tokens per speculative step: 1 + accepted / drafts


class PoolHealth(BaseModel):
    name: str
    model: str
    kind: str
    healthy: bool
    replicas_up: int
    replicas: list[ReplicaHealth]
    speculation: Speculation


class PoolsOut(BaseModel):
    object: str = "list"
    data: list[PoolHealth]


class RoutingRow(BaseModel):
    pool: str
    large: bool  # the baseline (all-large) pool
    requests: int  # served by this pool, cache hits excluded
    routed: int  # of which a routing policy chose this pool


class RoutingOut(BaseModel):
    object: Literal["routing_split"] = "routing_split"
    from_: datetime = Field(alias="from")
    to: datetime
    baseline_pool: str | None
    rows: list[RoutingRow]
    requests: int
    routed: int
    large_share: float | None  # of the requests pools served
    routed_large_share: float | None  # of the requests a routing policy decided

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class WhoAmI(BaseModel):
    role: Literal["master", "team"]
    tenant_id: str | None = None
    tenant: str | None = None
    team_id: str | None = None
    team: str | None = None
    key_id: str | None = None
    key_prefix: str | None = None


# Pools ---------------------------------------------------------------------------------------

def pool_health(pool: Pool, now: float) -> PoolHealth:
    replicas = []
    drafts = draft_tokens = accepted = 0.0
    for r in pool.replicas:
        replicas.append(ReplicaHealth(
            url=r.url, up=r.available(now), speculative=r.speculative, in_flight=r.in_flight,
            waiting=r.waiting, running=r.running, kv_cache_usage=r.kv_usage,
            prefix_cache_hit_rate=r.prefix_hit_rate, failures=r.failures,
            ejections=r.ejections, last_error=r.last_error,
            scraped_s_ago=round(now - r.scraped_at, 3) if r.scraped_at else None))
        drafts += r.spec.drafts
        draft_tokens += r.spec.draft_tokens
        accepted += r.spec.accepted_tokens
    spec = Speculation(drafts=drafts, draft_tokens=draft_tokens, accepted_tokens=accepted,
                       acceptance_rate=accepted / draft_tokens if draft_tokens else None,
                       mean_accepted_length=1.0 + accepted / drafts if drafts else None)
    up = sum(1 for r in replicas if r.up)
    return PoolHealth(name=pool.name, model=pool.model, kind=pool.config.kind, healthy=up > 0,
                      replicas_up=up, replicas=replicas, speculation=spec)


@admin_router.get("/pools", response_model=PoolsOut,
                  summary="Replica health and speculative-decoding acceptance per pool")
async def pools(state: StateDep) -> PoolsOut:
    now = time.monotonic()
    return PoolsOut(data=[pool_health(p, now) for p in state.pools.values()])


# Routing split -------------------------------------------------------------------------------

async def routing_split(state: State, q: ReportQuery) -> RoutingOut:
    """Requests per pool over [start, end) from the ledger (cache hits are not served by a pool)."""
    t = LedgerEntry
    routed = func.sum(case((t.route_decision.is_not(None), 1), else_=0))
    where = [t.ts >= q.start, t.ts < q.end, t.pool.is_not(None), t.cache_status != "hit"]
    for col, value in ((t.tenant_id, q.tenant_id), (t.team_id, q.team_id)):
        if value is not None:
            where.append(col == value)
    stmt = (select(t.pool, func.count().label("requests"), routed.label("routed"))
            .where(*where).group_by(t.pool).order_by(t.pool))
    await catch_up(state)
    async with state.sessions() as s:
        found = (await s.execute(stmt)).all()
    base = state.meter.baseline_pool
    rows = [RoutingRow(pool=p, large=p == base, requests=int(n), routed=int(r or 0))
            for p, n, r in found]
    total = sum(r.requests for r in rows)
    routed_total = sum(r.routed for r in rows)
    large = sum(r.requests for r in rows if r.large)
    large_routed = sum(r.routed for r in rows if r.large)
    return RoutingOut.model_validate({
        "from": q.start, "to": q.end, "baseline_pool": base, "rows": rows, "requests": total,
        "routed": routed_total, "large_share": large / total if total else None,
        "routed_large_share": large_routed / routed_total if routed_total else None})


def _range(from_: str | None, to: str | None, tenant_id: str | None = None,
           team_id: str | None = None) -> ReportQuery:
    start, end = default_range(datetime.now(UTC))
    return ReportQuery(parse_time(from_, start, "from"), parse_time(to, end, "to"), (),
                       tenant_id=tenant_id, team_id=team_id)


@admin_router.get("/routing", response_model=RoutingOut,
                  summary="Requests per pool and the router's small/large split")
async def routing(state: StateDep, from_: FromQ = None, to: ToQ = None,
                  tenant: Annotated[str | None, Query(description="Tenant id or name.")] = None,
                  team: Annotated[str | None, Query(description="Team id or name.")] = None,
                  ) -> RoutingOut:
    tenant_id = team_id = None
    async with state.sessions() as s:
        if tenant is not None:
            tenant_id = (await admin.resolve(s, Tenant, tenant)).id
        if team is not None:
            team_id = (await admin.resolve(s, Team, team, tenant_id)).id
    return await routing_split(state, _range(from_, to, tenant_id=tenant_id, team_id=team_id))


@team_router.get("/routing", response_model=RoutingOut,
                 summary="This key's team: requests per pool and the router split")
async def team_routing(state: StateDep, principal: PrincipalDep, from_: FromQ = None,
                       to: ToQ = None) -> RoutingOut:
    return await routing_split(state, _range(from_, to, team_id=principal.team_id))


# A team's own budget -------------------------------------------------------------------------

@team_router.get("/budget", response_model=BudgetOut,
                 summary="This key's team: its budget and the current period's spend")
async def team_budget(state: StateDep, principal: PrincipalDep) -> BudgetOut:
    """404 `budget_not_found` when the team has no budget."""
    async with state.sessions() as s:
        row = await admin.get_budget(s, "team", principal.team_id)
    return await budget_out(state, row, principal.tenant_id)


# Who is calling ------------------------------------------------------------------------------

@team_router.get("/whoami", response_model=WhoAmI, dependencies=[Depends(bearer_scheme)],
                 summary="The kind of key (master or a team's) and, for a team's key, its team")
async def whoami(request: Request, state: StateDep) -> WhoAmI:
    header = request.headers.get("authorization")
    master = state.settings.master_key
    try:
        authenticate_master(master.get_secret_value() if master else None, header)
        return WhoAmI(role="master")
    except AuthenticationFailed:
        principal = authenticate(state.directory, header)  # 401 for anything else
    async with state.sessions() as s:
        team = await s.get(Team, principal.team_id)
        tenant = await s.get(Tenant, principal.tenant_id)
    return WhoAmI(role="team", tenant_id=principal.tenant_id,
                  tenant=tenant.name if tenant else None, team_id=principal.team_id,
                  team=team.name if team else None, key_id=principal.key_id,
                  key_prefix=principal.prefix)
