"""An in-memory snapshot of keys, teams, tenants, budgets and prices.

The hot path reads only this snapshot (no SQL). Admin writes reload the rows they touched,
here and, through Redis pub/sub, on every other gateway replica.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounting.periods import Period
from gateway.accounting.prices import ModelPrice
from gateway.storage.models import ApiKey, Budget, PriceRow, Team, Tenant

log = logging.getLogger("frugate.tenancy")


@dataclass(frozen=True, slots=True)
class BudgetRule:
    scope: str  # tenant | team | key
    scope_id: str
    limit_micros: int | None
    limit_tokens: int | None
    period: Period
    soft_limit_pct: int | None = None
    webhook_url: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller behind a virtual key, with everything admission needs."""

    key_id: str
    tenant_id: str
    team_id: str
    prefix: str
    allowed_models: frozenset[str] | None = None
    scopes: frozenset[str] = frozenset()
    expires_at: datetime | None = None
    key_rpm: int | None = None
    key_tpm: int | None = None
    team_rpm: int | None = None
    team_tpm: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


@dataclass
class Directory:
    sessions: async_sessionmaker[AsyncSession] | None = None
    by_hash: dict[str, Principal] = field(default_factory=dict)
    budgets: dict[tuple[str, str], BudgetRule] = field(default_factory=dict)
    prices: dict[str, ModelPrice] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    tenants: dict[str, Tenant] = field(default_factory=dict)
    _hash_of_key: dict[str, str] = field(default_factory=dict)

    def lookup(self, key_hash: str) -> Principal | None:
        return self.by_hash.get(key_hash)

    def budget_rules(self, p: Principal) -> list[BudgetRule]:
        rules = []
        for scope, sid in (("key", p.key_id), ("team", p.team_id), ("tenant", p.tenant_id)):
            rule = self.budgets.get((scope, sid))
            if rule is not None:
                rules.append(rule)
        return rules

    async def reload_all(self) -> None:
        if self.sessions is None:
            return
        async with self.sessions() as s:
            tenants = {t.id: t for t in (await s.scalars(select(Tenant))).all()}
            teams = {t.id: t for t in (await s.scalars(select(Team))).all()}
            keys = (await s.scalars(select(ApiKey))).all()
            budgets = (await s.scalars(select(Budget))).all()
            prices = (await s.scalars(select(PriceRow))).all()
        self.tenants, self.teams = tenants, teams
        by_hash: dict[str, Principal] = {}
        hash_of_key: dict[str, str] = {}
        for k in keys:
            p = self._principal(k)
            if p is not None:
                by_hash[k.key_hash] = p
                hash_of_key[k.id] = k.key_hash
        self.by_hash, self._hash_of_key = by_hash, hash_of_key
        self.budgets = {(b.scope, b.scope_id): _rule(b) for b in budgets}
        self.prices = {row.model: ModelPrice(row.input_micros, row.output_micros,
                                             row.cached_input_micros) for row in prices}

    async def reload(self, kind: str, ident: str) -> None:
        """Refresh one changed object (and what depends on it) from the database."""
        if self.sessions is None:
            return
        if kind in ("tenant", "team"):
            # Team limits and settings are folded into every key of the team: reload all.
            await self.reload_all()
            return
        async with self.sessions() as s:
            if kind == "key":
                row = await s.get(ApiKey, ident)
                old = self._hash_of_key.pop(ident, None)
                if old is not None:
                    self.by_hash.pop(old, None)
                if row is not None:
                    p = self._principal(row)
                    if p is not None:
                        self.by_hash[row.key_hash] = p
                        self._hash_of_key[row.id] = row.key_hash
            elif kind == "budget":
                scope, sid = ident.split(":", 1)
                b = await s.get(Budget, (scope, sid))
                if b is None:
                    self.budgets.pop((scope, sid), None)
                else:
                    self.budgets[(scope, sid)] = _rule(b)
            elif kind == "price":
                pr = await s.get(PriceRow, ident)
                if pr is None:  # override removed: the configured price applies again
                    self.prices.pop(ident, None)
                else:
                    self.prices[ident] = ModelPrice(pr.input_micros, pr.output_micros,
                                                    pr.cached_input_micros)

    def _principal(self, k: ApiKey) -> Principal | None:
        if k.revoked_at is not None:
            return None
        team = self.teams.get(k.team_id)
        team_settings: dict[str, Any] = dict(team.settings or {}) if team else {}
        return Principal(
            key_id=k.id,
            tenant_id=k.tenant_id,
            team_id=k.team_id,
            prefix=k.prefix,
            allowed_models=frozenset(k.allowed_models) if k.allowed_models else None,
            scopes=frozenset(k.scopes or ()),
            expires_at=_utc(k.expires_at),
            key_rpm=k.rpm,
            key_tpm=k.tpm,
            team_rpm=team.rpm if team else None,
            team_tpm=team.tpm if team else None,
            settings={**team_settings, **(k.settings or {})},
        )


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _rule(b: Budget) -> BudgetRule:
    return BudgetRule(b.scope, b.scope_id, b.limit_micros, b.limit_tokens,
                      b.period,  # type: ignore[arg-type]
                      b.soft_limit_pct, b.webhook_url)
