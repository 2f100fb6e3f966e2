"""Create, change and delete tenants, teams, keys, budgets and prices.

Plain async functions over a session: the admin REST API, the CLI and tests all use them.
Each write returns what changed so the caller can publish an invalidation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.accounting.prices import usd_to_micros
from gateway.errors import InvalidRequest, NotFound
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
    old.expires_at = min(old.expires_at, grace_end) if old.expires_at else grace_end
    old.replaced_by = new.row.id
    return new


async def revoke_key(s: AsyncSession, key_id: str) -> ApiKey:
    row = await get(s, ApiKey, key_id)
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


async def get(s: AsyncSession, model: type[Any], ident: str) -> Any:
    row = await s.get(model, ident)
    if row is None:
        kind = {Tenant: "tenant", Team: "team", ApiKey: "key"}.get(model, model.__name__.lower())
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
        from gateway.errors import FrugateError

        err = FrugateError(message, code="conflict")
        err.status_code, err.type = 409, "invalid_request_error"
        raise err from None
