"""Create, change and delete tenants, teams, keys, budgets and prices.

Plain async functions over a session: the admin REST API, the CLI and tests all use them.
Each write returns what changed so the caller can publish an invalidation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounting.prices import usd_to_micros
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.storage.models import ApiKey, Budget, PriceRow, Team, Tenant
from gateway.tenancy.keys import display_prefix, hash_key, new_id, new_key


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NewKey:
    row: ApiKey
    plaintext: str


async def create_tenant(s: AsyncSession, name: str, settings: dict[str, Any] | None = None,
                        tenant_id: str | None = None) -> Tenant:
    t = Tenant(id=tenant_id or new_id("ten"), name=name, created_at=_now(),
               settings=settings or {})
    s.add(t)
    await _flush_unique(s, f"A tenant named '{name}' already exists.")
    return t


async def create_team(s: AsyncSession, tenant_id: str, name: str, *, rpm: int | None = None,
                      tpm: int | None = None, settings: dict[str, Any] | None = None,
                      team_id: str | None = None) -> Team:
    await get(s, Tenant, tenant_id)
    t = Team(id=team_id or new_id("team"), tenant_id=tenant_id, name=name, created_at=_now(),
             rpm=rpm, tpm=tpm, settings=settings or {})
    s.add(t)
    await _flush_unique(s, f"A team named '{name}' already exists in this tenant.")
    return t


async def create_key(s: AsyncSession, team_id: str, *, name: str = "",
                     allowed_models: list[str] | None = None, scopes: list[str] | None = None,
                     expires_at: datetime | None = None, rpm: int | None = None,
                     tpm: int | None = None, settings: dict[str, Any] | None = None) -> NewKey:
    team = await get(s, Team, team_id)
    plaintext = new_key()
    row = ApiKey(id=new_id("key"), key_hash=hash_key(plaintext), prefix=display_prefix(plaintext),
                 name=name, tenant_id=team.tenant_id, team_id=team.id, created_at=_now(),
                 expires_at=expires_at, revoked_at=None, allowed_models=allowed_models,
                 scopes=scopes or [], rpm=rpm, tpm=tpm, settings=settings or {})
    s.add(row)
    await s.flush()
    return NewKey(row, plaintext)


async def rotate_key(s: AsyncSession, key_id: str, grace_s: int) -> NewKey:
    """A new key with the old one's settings; the old key keeps working for `grace_s`."""
    old = await get(s, ApiKey, key_id)
    if old.revoked_at is not None:
        raise InvalidRequest("A revoked key cannot be rotated.")
    new = await create_key(s, old.team_id, name=old.name, allowed_models=old.allowed_models,
                           scopes=list(old.scopes or []), expires_at=old.expires_at,
                           rpm=old.rpm, tpm=old.tpm, settings=dict(old.settings or {}))
    grace_end = _now() + timedelta(seconds=grace_s)
    current = _utc(old.expires_at)  # SQLite hands back naive UTC datetimes
    old.expires_at = min(current, grace_end) if current else grace_end
    old.replaced_by = new.row.id
    return new


async def revoke_key(s: AsyncSession, key_id: str) -> ApiKey:
    row: ApiKey = await get(s, ApiKey, key_id)
    if row.revoked_at is None:
        row.revoked_at = _now()
    return row


async def set_budget(s: AsyncSession, scope: str, scope_id: str, *, limit_usd: Decimal | None,
                     limit_tokens: int | None, period: str, soft_limit_pct: int | None,
                     webhook_url: str | None) -> Budget:
    await get(s, {"tenant": Tenant, "team": Team, "key": ApiKey}[scope], scope_id)
    row = await s.get(Budget, (scope, scope_id))
    if row is None:
        row = Budget(scope=scope, scope_id=scope_id)
        s.add(row)
    row.limit_micros = usd_to_micros(limit_usd) if limit_usd is not None else None
    row.limit_tokens = limit_tokens
    row.period = period
    row.soft_limit_pct = soft_limit_pct
    row.webhook_url = webhook_url
    row.updated_at = _now()
    await s.flush()
    return row


async def set_price(s: AsyncSession, model: str, *, input_usd: Decimal, output_usd: Decimal,
                    cached_input_usd: Decimal | None) -> PriceRow:
    row = await s.get(PriceRow, model)
    if row is None:
        row = PriceRow(model=model)
        s.add(row)
    row.input_micros = usd_to_micros(input_usd)
    row.output_micros = usd_to_micros(output_usd)
    row.cached_input_micros = usd_to_micros(
        cached_input_usd if cached_input_usd is not None else input_usd)
    row.updated_at = _now()
    await s.flush()
    return row


# Listing, changing and deleting -----------------------------------------------------------------

SCOPES: dict[str, type[Any]] = {"tenant": Tenant, "team": Team, "key": ApiKey}


def key_status(row: ApiKey, now: datetime | None = None) -> str:
    if row.revoked_at is not None:
        return "revoked"
    expires = _utc(row.expires_at)
    if expires is not None and expires <= (now or _now()):
        return "expired"
    return "active"


async def list_tenants(s: AsyncSession, name: str | None = None) -> list[Tenant]:
    q = select(Tenant).order_by(Tenant.created_at, Tenant.id)
    if name is not None:
        q = q.where(Tenant.name == name)
    return list((await s.scalars(q)).all())


async def list_teams(s: AsyncSession, tenant_id: str | None = None,
                     name: str | None = None) -> list[Team]:
    q = select(Team).order_by(Team.created_at, Team.id)
    if tenant_id is not None:
        q = q.where(Team.tenant_id == tenant_id)
    if name is not None:
        q = q.where(Team.name == name)
    return list((await s.scalars(q)).all())


async def list_keys(s: AsyncSession, *, team_id: str | None = None, tenant_id: str | None = None,
                    include_revoked: bool = False, limit: int = 100,
                    offset: int = 0) -> list[ApiKey]:
    q = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id).limit(limit).offset(offset)
    if team_id is not None:
        q = q.where(ApiKey.team_id == team_id)
    if tenant_id is not None:
        q = q.where(ApiKey.tenant_id == tenant_id)
    if not include_revoked:
        q = q.where(ApiKey.revoked_at.is_(None))
    return list((await s.scalars(q)).all())


async def update(s: AsyncSession, model: type[Any], ident: str,
                 changes: dict[str, Any]) -> Any:
    """Set the given columns (a PATCH: only what the caller sent)."""
    row = await get(s, model, ident)
    for name, value in changes.items():
        setattr(row, name, value)
    await _flush_unique(s, f"Another {_kind(model)} already has the name '{changes.get('name')}'.")
    return row


async def set_limits(s: AsyncSession, scope: str, ident: str, rpm: int | None,
                     tpm: int | None) -> Team | ApiKey:
    row: Team | ApiKey = await get(s, {"team": Team, "key": ApiKey}[scope], ident)
    row.rpm, row.tpm = rpm, tpm
    await s.flush()
    return row


async def get_budget(s: AsyncSession, scope: str, scope_id: str) -> Budget:
    await get(s, SCOPES[scope], scope_id)
    row = await s.get(Budget, (scope, scope_id))
    if row is None:
        raise NotFound(f"The {scope} '{scope_id}' has no budget.", code="budget_not_found")
    return row


async def delete_budget(s: AsyncSession, scope: str, scope_id: str) -> None:
    await s.delete(await get_budget(s, scope, scope_id))


async def delete_tenant(s: AsyncSession, tenant_id: str) -> None:
    row = await get(s, Tenant, tenant_id)
    teams = list((await s.scalars(select(Team.id).where(Team.tenant_id == tenant_id))).all())
    keys = list((await s.scalars(select(ApiKey.id).where(ApiKey.tenant_id == tenant_id))).all())
    await _drop_budgets(s, [("tenant", tenant_id)] + [("team", t) for t in teams]
                        + [("key", k) for k in keys])
    # Teams and keys go with it (ON DELETE CASCADE).
    await s.delete(row)
    await s.flush()


async def delete_team(s: AsyncSession, team_id: str) -> None:
    row = await get(s, Team, team_id)
    keys = list((await s.scalars(select(ApiKey.id).where(ApiKey.team_id == team_id))).all())
    await _drop_budgets(s, [("team", team_id)] + [("key", k) for k in keys])
    await s.delete(row)
    await s.flush()


async def delete_key(s: AsyncSession, key_id: str) -> None:
    row = await get(s, ApiKey, key_id)
    await _drop_budgets(s, [("key", key_id)])
    await s.delete(row)
    await s.flush()


async def _drop_budgets(s: AsyncSession, scopes: list[tuple[str, str]]) -> None:
    for i in range(0, len(scopes), 500):
        chunk = scopes[i : i + 500]
        await s.execute(delete(Budget).where(tuple_(Budget.scope, Budget.scope_id).in_(chunk)))


def _kind(model: type[Any]) -> str:
    return {Tenant: "tenant", Team: "team", ApiKey: "key"}.get(model, model.__name__.lower())


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


async def get(s: AsyncSession, model: type[Any], ident: str) -> Any:
    row = await s.get(model, ident)
    if row is None:
        kind = _kind(model)
        raise NotFound(f"No {kind} with id '{ident}'.", code=f"{kind}_not_found")
    return row


async def find_team(s: AsyncSession, tenant_name: str, team_name: str) -> Team | None:
    q = select(Team).join(Tenant, Team.tenant_id == Tenant.id).where(
        Tenant.name == tenant_name, Team.name == team_name)
    return (await s.scalars(q)).first()


async def _flush_unique(s: AsyncSession, message: str) -> None:
    try:
        await s.flush()
    except IntegrityError:
        await s.rollback()
        raise Conflict(message) from None


async def resolve(s: AsyncSession, model: type[Any], ref: str,
                  tenant_id: str | None = None) -> Any:
    """A tenant or team by id, else by its (unique) name; teams by name within `tenant_id`."""
    row = await s.get(model, ref)
    if row is not None and (tenant_id is None or getattr(row, "tenant_id", tenant_id) == tenant_id):
        return row
    q = select(model).where(model.name == ref)
    if tenant_id is not None and model is Team:
        q = q.where(Team.tenant_id == tenant_id)
    found = list((await s.scalars(q.limit(2))).all())
    kind = _kind(model)
    if not found:
        raise NotFound(f"No {kind} with id or name '{ref}'.", code=f"{kind}_not_found")
    if len(found) > 1:
        raise InvalidRequest(f"More than one {kind} is named '{ref}': use its id or give the "
                             "tenant.", param=kind, code="ambiguous_name")
    return found[0]


async def delete_price(s: AsyncSession, model: str) -> None:
    row = await s.get(PriceRow, model)
    if row is None:
        raise NotFound(f"No price override for '{model}'.", code="price_not_found")
    await s.delete(row)


async def list_prices(s: AsyncSession) -> list[PriceRow]:
    return list((await s.scalars(select(PriceRow).order_by(PriceRow.model))).all())
