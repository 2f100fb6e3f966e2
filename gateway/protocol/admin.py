"""Wire models of the admin API, `/v1/usage` and `/v1/feedback`.

Requests are strict (`extra="forbid"`): a misspelt field in an admin call is an error, not a
silent no-op. Money goes in as USD and comes out twice: USD floats (for people) computed from
the integer micro-dollar fields (for programs), which are exact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from gateway.accounting.periods import Period
from gateway.accounting.prices import MICROS

T = TypeVar("T")


def _as_utc(dt: datetime) -> datetime:
    # SQLite returns naive datetimes; every timestamp frugate stores is UTC.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]

Scope = Literal["tenant", "team", "key"]
Rate = int | None


def usd(micros: int | None) -> float | None:
    return None if micros is None else micros / MICROS


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ListOf(_Out, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]


class Deleted(_Out):
    id: str
    object: str
    deleted: bool = True


# Tenants -------------------------------------------------------------------------------------

class TenantCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    settings: dict[str, Any] = {}


class TenantUpdate(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    settings: dict[str, Any] | None = None


class TenantOut(_Out):
    object: Literal["tenant"] = "tenant"
    id: str
    name: str
    created_at: Timestamp
    settings: dict[str, Any]


# Teams ---------------------------------------------------------------------------------------

class TeamCreate(_In):
    tenant_id: str
    name: str = Field(min_length=1, max_length=200)
    rpm: Rate = Field(default=None, ge=1)
    tpm: Rate = Field(default=None, ge=1)
    settings: dict[str, Any] = {}


class TeamUpdate(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    settings: dict[str, Any] | None = None


class TeamOut(_Out):
    object: Literal["team"] = "team"
    id: str
    tenant_id: str
    name: str
    created_at: Timestamp
    rpm: int | None
    tpm: int | None
    settings: dict[str, Any]


# Keys ----------------------------------------------------------------------------------------

class KeyCreate(_In):
    team_id: str
    name: str = Field(default="", max_length=200)
    allowed_models: list[str] | None = Field(
        default=None, description="Models/aliases/policies the key may use (null: all).")
    scopes: list[str] = []
    expires_at: Timestamp | None = None
    expires_in_s: int | None = Field(default=None, gt=0, description="Alternative to expires_at.")
    rpm: Rate = Field(default=None, ge=1)
    tpm: Rate = Field(default=None, ge=1)
    settings: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyCreate:
        if self.expires_at is not None and self.expires_in_s is not None:
            raise ValueError("set at most one of expires_at and expires_in_s")
        return self


class KeyUpdate(_In):
    """PATCH: only the fields present change; `null` clears a field."""

    name: str | None = Field(default=None, max_length=200)
    allowed_models: list[str] | None = None
    scopes: list[str] | None = None
    expires_at: Timestamp | None = None
    settings: dict[str, Any] | None = None


class KeyOut(_Out):
    object: Literal["api_key"] = "api_key"
    id: str
    name: str
    prefix: str = Field(description="The key's first characters: enough to recognise it.")
    tenant_id: str
    team_id: str
    status: Literal["active", "expired", "revoked"]
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    allowed_models: list[str] | None
    scopes: list[str]
    rpm: int | None
    tpm: int | None
    settings: dict[str, Any]
    replaced_by: str | None


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself. Shown once: only its sha256 is stored.")


class KeyRotate(_In):
    grace_s: int = Field(default=86400, ge=0, le=30 * 86400,
                         description="How long the old key keeps working.")


class KeyRotated(KeyCreated):
    replaces: str
    old_key_expires_at: Timestamp


# Budgets and limits --------------------------------------------------------------------------

class BudgetSet(_In):
    limit_usd: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=6)
    limit_tokens: int | None = Field(default=None, ge=0)
    period: Period = "month"
    soft_limit_pct: int | None = Field(default=None, ge=1, le=100)
    webhook_url: str | None = Field(default=None, max_length=2000)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an http(s) URL")
        return v

    @model_validator(mode="after")
    def _soft_needs_money(self) -> BudgetSet:
        if self.soft_limit_pct is not None and self.limit_usd is None:
            raise ValueError("soft_limit_pct needs limit_usd (soft limits are on spend)")
        return self


class BudgetUsage(_Out):
    period_start: Timestamp
    period_end: Timestamp | None
    spent_micros: int
    held_micros: int
    spent_tokens: int
    spent_usd: float
    held_usd: float
    remaining_micros: int | None
    remaining_usd: float | None
    used_pct: float | None


class BudgetOut(_Out):
    object: Literal["budget"] = "budget"
    scope: Scope
    scope_id: str
    limit_micros: int | None
    limit_usd: float | None
    limit_tokens: int | None
    period: Period
    soft_limit_pct: int | None
    webhook_url: str | None
    updated_at: Timestamp
    current: BudgetUsage


class LimitsSet(_In):
    rpm: Rate = Field(default=None, ge=1, description="Requests per minute (null: no limit).")
    tpm: Rate = Field(default=None, ge=1, description="Tokens per minute (null: no limit).")


class LimitsOut(_Out):
    object: Literal["limits"] = "limits"
    scope: Literal["team", "key"]
    scope_id: str
    rpm: int | None
    tpm: int | None


# Prices --------------------------------------------------------------------------------------

class PriceSet(_In):
    """USD per 1M tokens."""

    input: Decimal = Field(ge=0, max_digits=18, decimal_places=6)
    output: Decimal = Field(ge=0, max_digits=18, decimal_places=6)
    cached_input: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=6)


class PriceOut(_Out):
    object: Literal["price"] = "price"
    model: str = Field(description="The pool name (aliases share their pool's price).")
    aliases: list[str]
    input_usd: float
    cached_input_usd: float
    output_usd: float
    input_micros: int
    cached_input_micros: int
    output_micros: int
    source: Literal["config", "admin"]
    updated_at: Timestamp | None = None


# Reports -------------------------------------------------------------------------------------

class UsageRow(_Out):
    """One group of a usage report. Group columns not asked for are null."""

    tenant_id: str | None = None
    tenant: str | None = None
    team_id: str | None = None
    team: str | None = None
    key_id: str | None = None
    key_prefix: str | None = None
    key_name: str | None = None
    model: str | None = None
    day: str | None = None
    requests: int
    errors: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
    baseline_micros: int
    savings_micros: int
    cache_savings_micros: int
    routing_savings_micros: int
    cost_usd: float
    baseline_usd: float
    savings_usd: float
    cache_savings_usd: float
    routing_savings_usd: float


class UsageReport(_Out):
    object: Literal["usage_report"] = "usage_report"
    from_: Timestamp = Field(alias="from")
    to: Timestamp
    group_by: list[str]
    source: Literal["ledger", "rollup"]
    rows: list[UsageRow]
    totals: UsageRow

    model_config = ConfigDict(from_attributes=True, populate_by_name=True,
                              serialize_by_alias=True)


# Feedback ------------------------------------------------------------------------------------

class FeedbackIn(_In):
    request_id: str = Field(min_length=1, max_length=64)
    score: float = Field(ge=0, le=1, description="Quality of the answer: 1 good, 0 bad.")
    comment: str | None = Field(default=None, max_length=4000)


class FeedbackOut(_Out):
    object: Literal["feedback"] = "feedback"
    id: int
    request_id: str
    score: float
    created_at: Timestamp
