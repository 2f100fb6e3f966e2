"""SQL models: one schema for SQLite (embedded) and PostgreSQL (scale-out).

Money is integer micro-dollars; timestamps are UTC.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict: JSON, list: JSON}


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    # Per-team policy: cache eligibility, default RAG collection, routing preferences.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Rotation: the key this one replaced stays valid until its expires_at (the grace period).
    replaced_by: Mapped[str | None] = mapped_column(String(64))


class Budget(Base):
    __tablename__ = "budgets"
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)  # tenant | team | key
    scope_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    limit_tokens: Mapped[int | None] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(8))  # day | week | month | total
    soft_limit_pct: Mapped[int | None] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]


class PriceRow(Base):
    __tablename__ = "prices"
    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    # Micro-dollars per 1M tokens.
    input_micros: Mapped[int] = mapped_column(BigInteger)
    cached_input_micros: Mapped[int] = mapped_column(BigInteger)
    output_micros: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class LedgerEntry(Base):
    __tablename__ = "ledger"
    __table_args__ = (
        Index("ix_ledger_team_ts", "team_id", "ts"),
        Index("ix_ledger_key_ts", "key_id", "ts"),
        Index("ix_ledger_tenant_ts", "tenant_id", "ts"),
    )
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime]
    finished_at: Mapped[datetime]
    tenant_id: Mapped[str] = mapped_column(String(64))
    team_id: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    end_user: Mapped[str | None] = mapped_column(String(256))
    endpoint: Mapped[str] = mapped_column(String(32))
    requested_model: Mapped[str] = mapped_column(String(256))
    pool: Mapped[str | None] = mapped_column(String(128))
    served_model: Mapped[str | None] = mapped_column(String(256))
    cache_status: Mapped[str] = mapped_column(String(16))  # hit | miss | bypass
    rag_used: Mapped[bool] = mapped_column(Boolean, default=False)
    route_decision: Mapped[str | None] = mapped_column(String(64))
    route_score: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    baseline_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32))
    error_type: Mapped[str | None] = mapped_column(String(64))
    # A cascade's discarded small answer (routing policies with cascade_min_logprob): its
    # cost, already included in cost_micros.
    cascade_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class DailyRollup(Base):
    """Per-day sums of the ledger, maintained by the ledger writer for cheap reports."""

    __tablename__ = "ledger_daily"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(256), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_hits: Mapped[int] = mapped_column(BigInteger, default=0)
    large_calls: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    baseline_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_savings_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    routing_savings_micros: Mapped[int] = mapped_column(BigInteger, default=0)


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    key_id: Mapped[str] = mapped_column(String(64))
    team_id: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class SoftLimitNotice(Base):
    """One row per (scope, period) whose soft-limit webhook was sent: fire once per period."""

    __tablename__ = "soft_limit_notices"
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    scope_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
