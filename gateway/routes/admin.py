"""The admin REST API (master key only): tenants, teams, keys, budgets, limits, prices, reports.

Each write commits, then publishes an invalidation so every replica's directory picks the change
up within a second (gateway.tenancy.invalidation). Responses never contain a key's plaintext,
except the one response that creates it (create, rotate).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from gateway.accounting.periods import period_end, period_start, period_tag
from gateway.accounting.prices import MICROS, ModelPrice
from gateway.errors import AuthenticationFailed, NotFound, PermissionDenied
from gateway.protocol.admin import (
    BudgetOut,
    BudgetSet,
    BudgetUsage,
    Deleted,
    KeyCreate,
    KeyCreated,
    KeyOut,
    KeyRotate,
    KeyRotated,
    KeyUpdate,
    LimitsOut,
    LimitsSet,
    ListOf,
    PriceOut,
    PriceSet,
    TeamCreate,
    TeamOut,
    TeamUpdate,
    TenantCreate,
    TenantOut,
    TenantUpdate,
    UsageReport,
    usd,
)
from gateway.rag_api import RagService
from gateway.routes.common import StateDep
from gateway.routes.usage import Format, FromQ, GroupQ, ToQ, render_report, report_query
from gateway.state import State
from gateway.storage.models import ApiKey, Budget, PriceRow, Team, Tenant
from gateway.tenancy import admin, authenticate_master, hash_key

master_scheme = HTTPBearer(auto_error=False, description="The master key.")


async def require_master(
    request: Request, state: StateDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(master_scheme)],
) -> None:
    header = request.headers.get("authorization")
    master = state.settings.master_key
    try:
        authenticate_master(master.get_secret_value() if master else None, header)
    except AuthenticationFailed:
        token = (header or "").partition(" ")[2].strip()
        if token and state.directory.lookup(hash_key(token)) is not None:
            raise PermissionDenied("Virtual keys cannot use the admin API; use the master key.",
                                   code="master_key_required") from None
        raise


_ERR = {"description": "OpenAI-style error: {\"error\": {message, type, param, code}}"}
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_master)],
                   responses={400: _ERR, 401: _ERR, 403: _ERR, 404: _ERR, 409: _ERR})
ScopePath = Literal["tenants", "teams", "keys"]
SCOPE_OF = {"tenants": "tenant", "teams": "team", "keys": "key"}


@asynccontextmanager
async def _write(state: State) -> AsyncIterator[AsyncSession]:
    async with state.sessions() as s, s.begin():
        yield s


# Tenants -------------------------------------------------------------------------------------

@router.post("/tenants", status_code=201, response_model=TenantOut, summary="Create a tenant")
async def create_tenant(body: TenantCreate, state: StateDep) -> TenantOut:
    async with _write(state) as s:
        row = await admin.create_tenant(s, body.name, body.settings)
    await state.invalidator.publish("tenant", row.id)
    return TenantOut.model_validate(row)


@router.get("/tenants", response_model=ListOf[TenantOut], summary="List tenants")
async def list_tenants(state: StateDep, name: str | None = None) -> ListOf[TenantOut]:
    async with state.sessions() as s:
        rows = await admin.list_tenants(s, name)
    return ListOf[TenantOut](data=[TenantOut.model_validate(r) for r in rows])


@router.get("/tenants/{tenant_id}", response_model=TenantOut, summary="Get a tenant")
async def get_tenant(tenant_id: str, state: StateDep) -> TenantOut:
    async with state.sessions() as s:
        return TenantOut.model_validate(await admin.get(s, Tenant, tenant_id))


@router.patch("/tenants/{tenant_id}", response_model=TenantOut, summary="Rename or reconfigure")
async def update_tenant(tenant_id: str, body: TenantUpdate, state: StateDep) -> TenantOut:
    async with _write(state) as s:
        row = await admin.update(s, Tenant, tenant_id, _changes(body, ("name", "settings")))
    await state.invalidator.publish("tenant", tenant_id)
    return TenantOut.model_validate(row)


@router.delete("/tenants/{tenant_id}", response_model=Deleted,
               summary="Delete a tenant with its teams, keys and budgets")
async def delete_tenant(tenant_id: str, state: StateDep) -> Deleted:
    async with _write(state) as s:
        await admin.delete_tenant(s, tenant_id)
    await state.invalidator.publish("tenant", tenant_id)
    # Its RAG collections and staged files go too (another tenant can never see them, but
    # they should not outlive it on disk).
    await asyncio.to_thread(RagService(state).forget_tenant, tenant_id)
    return Deleted(id=tenant_id, object="tenant")


# Teams ---------------------------------------------------------------------------------------

@router.post("/teams", status_code=201, response_model=TeamOut, summary="Create a team")
async def create_team(body: TeamCreate, state: StateDep) -> TeamOut:
    async with _write(state) as s:
        row = await admin.create_team(s, body.tenant_id, body.name, rpm=body.rpm, tpm=body.tpm,
                                      settings=body.settings)
    await state.invalidator.publish("team", row.id)
    return TeamOut.model_validate(row)


@router.get("/teams", response_model=ListOf[TeamOut], summary="List teams")
async def list_teams(state: StateDep, tenant_id: str | None = None,
                     name: str | None = None) -> ListOf[TeamOut]:
    async with state.sessions() as s:
        rows = await admin.list_teams(s, tenant_id, name)
    return ListOf[TeamOut](data=[TeamOut.model_validate(r) for r in rows])


@router.get("/teams/{team_id}", response_model=TeamOut, summary="Get a team")
async def get_team(team_id: str, state: StateDep) -> TeamOut:
    async with state.sessions() as s:
        return TeamOut.model_validate(await admin.get(s, Team, team_id))


@router.patch("/teams/{team_id}", response_model=TeamOut, summary="Rename or reconfigure a team")
async def update_team(team_id: str, body: TeamUpdate, state: StateDep) -> TeamOut:
    async with _write(state) as s:
        row = await admin.update(s, Team, team_id, _changes(body, ("name", "settings")))
    await state.invalidator.publish("team", team_id)
    return TeamOut.model_validate(row)


@router.delete("/teams/{team_id}", response_model=Deleted,
               summary="Delete a team with its keys and budgets")
async def delete_team(team_id: str, state: StateDep) -> Deleted:
    async with _write(state) as s:
        await admin.delete_team(s, team_id)
    await state.invalidator.publish("team", team_id)
    return Deleted(id=team_id, object="team")


# Keys ----------------------------------------------------------------------------------------

def _key(row: ApiKey, **extra: Any) -> dict[str, Any]:
    fields = {f: getattr(row, f) for f in KeyOut.model_fields if f not in ("object", "status")}
    return fields | {"status": admin.key_status(row)} | extra


@router.post("/keys", status_code=201, response_model=KeyCreated,
             summary="Create a virtual key (the plaintext is in this response only)")
async def create_key(body: KeyCreate, state: StateDep) -> KeyCreated:
    _check_models(state, body.allowed_models)
    expires = body.expires_at
    if body.expires_in_s is not None:
        expires = datetime.now(UTC) + timedelta(seconds=body.expires_in_s)
    async with _write(state) as s:
        new = await admin.create_key(s, body.team_id, name=body.name,
                                     allowed_models=body.allowed_models, scopes=body.scopes,
                                     expires_at=expires, rpm=body.rpm, tpm=body.tpm,
                                     settings=body.settings)
    await state.invalidator.publish("key", new.row.id)
    return KeyCreated.model_validate(_key(new.row, key=new.plaintext))


@router.get("/keys", response_model=ListOf[KeyOut], summary="List keys (never their plaintext)")
async def list_keys(state: StateDep, team_id: str | None = None, tenant_id: str | None = None,
                    include_revoked: bool = False,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> ListOf[KeyOut]:
    async with state.sessions() as s:
        rows = await admin.list_keys(s, team_id=team_id, tenant_id=tenant_id,
                                     include_revoked=include_revoked, limit=limit, offset=offset)
    return ListOf[KeyOut](data=[KeyOut.model_validate(_key(r)) for r in rows])


@router.get("/keys/{key_id}", response_model=KeyOut, summary="Get a key")
async def get_key(key_id: str, state: StateDep) -> KeyOut:
    async with state.sessions() as s:
        return KeyOut.model_validate(_key(await admin.get(s, ApiKey, key_id)))


@router.patch("/keys/{key_id}", response_model=KeyOut,
              summary="Change a key's name, models, scopes, expiry or settings")
async def update_key(key_id: str, body: KeyUpdate, state: StateDep) -> KeyOut:
    changes = _changes(body, ("name", "allowed_models", "scopes", "expires_at", "settings"))
    _check_models(state, changes.get("allowed_models"))
    async with _write(state) as s:
        row = await admin.update(s, ApiKey, key_id, changes)
    await state.invalidator.publish("key", key_id)
    return KeyOut.model_validate(_key(row))


@router.delete("/keys/{key_id}", response_model=Deleted, summary="Delete a key and its budget")
async def delete_key(key_id: str, state: StateDep) -> Deleted:
    async with _write(state) as s:
        await admin.delete_key(s, key_id)
    await state.invalidator.publish("key", key_id)
    await state.invalidator.publish("budget", f"key:{key_id}")
    return Deleted(id=key_id, object="api_key")


@router.post("/keys/{key_id}/rotate", response_model=KeyRotated,
             summary="Issue a replacement key; the old one works for a grace period")
async def rotate_key(key_id: str, state: StateDep, body: KeyRotate | None = None) -> KeyRotated:
    grace = (body or KeyRotate()).grace_s
    async with _write(state) as s:
        new = await admin.rotate_key(s, key_id, grace)
        old = await admin.get(s, ApiKey, key_id)
    await state.invalidator.publish("key", key_id)
    await state.invalidator.publish("key", new.row.id)
    return KeyRotated.model_validate(_key(new.row, key=new.plaintext, replaces=key_id,
                                          old_key_expires_at=old.expires_at))


@router.post("/keys/{key_id}/revoke", response_model=KeyOut,
             summary="Revoke a key at once, on every replica")
async def revoke_key(key_id: str, state: StateDep) -> KeyOut:
    async with _write(state) as s:
        row = await admin.revoke_key(s, key_id)
    await state.invalidator.publish("key", key_id)
    return KeyOut.model_validate(_key(row))


# Budgets and rate limits ---------------------------------------------------------------------

@router.put("/{scopes}/{scope_id}/budget", response_model=BudgetOut,
            summary="Set the budget of a tenant, team or key")
async def set_budget(scopes: ScopePath, scope_id: str, body: BudgetSet,
                     state: StateDep) -> BudgetOut:
    scope = SCOPE_OF[scopes]
    async with _write(state) as s:
        row = await admin.set_budget(s, scope, scope_id, limit_usd=body.limit_usd,
                                     limit_tokens=body.limit_tokens, period=body.period,
                                     soft_limit_pct=body.soft_limit_pct,
                                     webhook_url=body.webhook_url)
        tenant_id = await _tenant_of(s, scope, scope_id)
    await state.invalidator.publish("budget", f"{scope}:{scope_id}")
    return await budget_out(state, row, tenant_id)


@router.get("/{scopes}/{scope_id}/budget", response_model=BudgetOut,
            summary="A budget with its spend in the current period")
async def get_budget(scopes: ScopePath, scope_id: str, state: StateDep) -> BudgetOut:
    scope = SCOPE_OF[scopes]
    async with state.sessions() as s:
        row = await admin.get_budget(s, scope, scope_id)
        tenant_id = await _tenant_of(s, scope, scope_id)
    return await budget_out(state, row, tenant_id)


@router.delete("/{scopes}/{scope_id}/budget", response_model=Deleted,
               summary="Remove a budget (no spend limit)")
async def delete_budget(scopes: ScopePath, scope_id: str, state: StateDep) -> Deleted:
    scope = SCOPE_OF[scopes]
    async with _write(state) as s:
        await admin.delete_budget(s, scope, scope_id)
    await state.invalidator.publish("budget", f"{scope}:{scope_id}")
    return Deleted(id=f"{scope}:{scope_id}", object="budget")


@router.put("/{scopes}/{scope_id}/limits", response_model=LimitsOut,
            summary="Set requests/tokens per minute of a team or key (null: no limit)")
async def set_limits(scopes: Literal["teams", "keys"], scope_id: str, body: LimitsSet,
                     state: StateDep) -> LimitsOut:
    scope = SCOPE_OF[scopes]
    async with _write(state) as s:
        row = await admin.set_limits(s, scope, scope_id, body.rpm, body.tpm)
    await state.invalidator.publish(scope, scope_id)
    return LimitsOut(scope=scope, scope_id=scope_id, rpm=row.rpm, tpm=row.tpm)  # type: ignore[arg-type]


@router.get("/{scopes}/{scope_id}/limits", response_model=LimitsOut,
            summary="Rate limits of a team or key")
async def get_limits(scopes: Literal["teams", "keys"], scope_id: str,
                     state: StateDep) -> LimitsOut:
    scope = SCOPE_OF[scopes]
    async with state.sessions() as s:
        row = await admin.get(s, {"team": Team, "key": ApiKey}[scope], scope_id)
    return LimitsOut(scope=scope, scope_id=scope_id, rpm=row.rpm, tpm=row.tpm)  # type: ignore[arg-type]


# Prices --------------------------------------------------------------------------------------

@router.get("/prices", response_model=ListOf[PriceOut],
            summary="Prices per pool, USD per 1M tokens (config, or an admin override)")
async def list_prices(state: StateDep) -> ListOf[PriceOut]:
    async with state.sessions() as s:
        rows = {r.model: r for r in await admin.list_prices(s)}
    out = []
    for name, pool in state.catalog.pools.items():
        row = rows.get(name)
        price = state.meter.price(name)
        out.append(_price_out(name, pool.config.aliases, price, row))
    return ListOf[PriceOut](data=out)


@router.put("/prices/{model}", response_model=PriceOut,
            summary="Override a pool's price (by pool name or alias)")
async def set_price(model: str, body: PriceSet, state: StateDep) -> PriceOut:
    pool = next((p for p in state.catalog.pools.values()
                 if model == p.name or model in p.config.aliases), None)
    if pool is None:
        raise NotFound(f"No pool or alias named '{model}'.", param="model",
                       code="model_not_found")
    async with _write(state) as s:
        row = await admin.set_price(s, pool.name, input_usd=body.input, output_usd=body.output,
                                    cached_input_usd=body.cached_input)
    await state.invalidator.publish("price", pool.name)
    price = ModelPrice(row.input_micros, row.output_micros, row.cached_input_micros)
    return _price_out(pool.name, pool.config.aliases, price, row)


@router.delete("/prices/{model}", response_model=PriceOut,
               summary="Remove a pool's price override: the configured price applies again")
async def delete_price(model: str, state: StateDep) -> PriceOut:
    pool = next((p for p in state.catalog.pools.values()
                 if model == p.name or model in p.config.aliases), None)
    if pool is None:
        raise NotFound(f"No pool or alias named '{model}'.", param="model",
                       code="model_not_found")
    async with _write(state) as s:
        await admin.delete_price(s, pool.name)
    await state.invalidator.publish("price", pool.name)
    return _price_out(pool.name, pool.config.aliases, state.meter.config_prices[pool.name], None)


# Cache ---------------------------------------------------------------------------------------

@router.delete("/cache", summary="Purge cached responses of a tenant (optionally a team, model)")
async def purge_cache(state: StateDep,
                      tenant: Annotated[str, Query(description="Tenant id.")],
                      team: Annotated[str | None, Query(description="Team id.")] = None,
                      model: Annotated[str | None, Query(description="Model as requested.")]
                      = None) -> dict[str, Any]:
    if state.caching is None:
        raise NotFound("The cache is disabled on this gateway.", code="cache_disabled")
    purged = await state.caching.purge(tenant, team, model)
    return {"object": "cache.purge", "tenant": tenant, "team": team, "model": model,
            "purged": purged}


# Reports -------------------------------------------------------------------------------------

@router.get("/reports/usage", response_model=UsageReport,
            summary="Requests, tokens, cost, baseline and savings, grouped",
            responses={200: {"content": {"text/csv": {}}}})
async def usage(state: StateDep, from_: FromQ = None, to: ToQ = None, group_by: GroupQ = None,
                tenant: Annotated[str | None, Query(description="Tenant id or name.")] = None,
                team: Annotated[str | None, Query(description="Team id or name.")] = None,
                key: Annotated[str | None, Query(description="Key id.")] = None,
                model: str | None = None, format: Format = "json",
                source: Literal["auto", "ledger", "rollup"] = "auto") -> Response | UsageReport:
    """Sums of the ledger over [from, to). `source=auto` reads the daily rollup when the range
    is whole UTC days (identical numbers) and the ledger otherwise."""
    tenant_id = team_id = None
    async with state.sessions() as s:
        if tenant is not None:
            tenant_id = (await admin.resolve(s, Tenant, tenant)).id
        if team is not None:
            team_id = (await admin.resolve(s, Team, team, tenant_id)).id
    q = report_query(from_, to, group_by, source=source, tenant_id=tenant_id, team_id=team_id,
                     key_id=key, model=model)
    return await render_report(state, q, format)


# Helpers -------------------------------------------------------------------------------------

def _changes(body: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The fields the client actually sent (a PATCH leaves the others alone)."""
    changes = {f: getattr(body, f) for f in body.model_fields_set if f in allowed}
    if changes.get("name", "") is None:
        del changes["name"]  # names cannot be cleared
    for f, empty in (("settings", {}), ("scopes", [])):
        if f in changes and changes[f] is None:
            changes[f] = empty
    return changes


def _check_models(state: State, models: list[str] | None) -> None:
    if not models:
        return
    known = {name for name, _ in state.catalog.listed()} | set(state.embeddings.model_names())
    unknown = [m for m in models if m not in known]
    if unknown:
        raise NotFound(f"Unknown model(s) in allowed_models: {', '.join(unknown)}.",
                       param="allowed_models", code="model_not_found")


async def _tenant_of(s: AsyncSession, scope: str, scope_id: str) -> str:
    if scope == "tenant":
        return scope_id
    row = await admin.get(s, admin.SCOPES[scope], scope_id)
    return str(row.tenant_id)


async def budget_out(state: State, row: Budget, tenant_id: str) -> BudgetOut:
    now = datetime.now(UTC)
    period: Any = row.period
    spent, held, tokens = await state.admission.usage(row.scope, row.scope_id,
                                                      period_tag(period, now), tenant_id)
    remaining = None if row.limit_micros is None else max(0, row.limit_micros - spent - held)
    pct = None if not row.limit_micros else round(100 * spent / row.limit_micros, 2)
    current = BudgetUsage(period_start=period_start(period, now),
                          period_end=period_end(period, now), spent_micros=spent,
                          held_micros=held, spent_tokens=tokens, spent_usd=spent / MICROS,
                          held_usd=held / MICROS, remaining_micros=remaining,
                          remaining_usd=usd(remaining), used_pct=pct)
    return BudgetOut(scope=row.scope, scope_id=row.scope_id,  # type: ignore[arg-type]
                     limit_micros=row.limit_micros, limit_usd=usd(row.limit_micros),
                     limit_tokens=row.limit_tokens, period=period,
                     soft_limit_pct=row.soft_limit_pct, webhook_url=row.webhook_url,
                     updated_at=row.updated_at, current=current)


def _price_out(name: str, aliases: list[str], price: ModelPrice,
               row: PriceRow | None) -> PriceOut:
    return PriceOut(model=name, aliases=list(aliases), input_usd=price.input / MICROS,
                    cached_input_usd=price.cached_input / MICROS,
                    output_usd=price.output / MICROS,
                    input_micros=price.input, cached_input_micros=price.cached_input,
                    output_micros=price.output, source="admin" if row else "config",
                    updated_at=row.updated_at if row else None)

