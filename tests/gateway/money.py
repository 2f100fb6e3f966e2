"""Helpers for the money tests: seed tenants and budgets, read the ledger, price usage."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from gateway.accounting.prices import ModelPrice
from gateway.storage import connect, create_schema
from gateway.tenancy import admin
from workers.sim.process import SimServer

# USD per 1M tokens: large enough that every token is visible in integer micro-dollars.
PRICE = {"input": 100.0, "output": 200.0}
MODEL_PRICE = ModelPrice(100_000_000, 200_000_000, 100_000_000)


async def seed(db_url: str, *, team_budget_usd: str | None = None) -> tuple[str, str]:
    """Schema + a tenant, team and key (and a daily team budget). Returns (key, team id)."""
    engine, sessions = connect(db_url)
    try:
        await create_schema(engine)
        async with sessions() as s, s.begin():
            tenant = await admin.create_tenant(s, "acme-" + secrets.token_hex(3))
            team = await admin.create_team(s, tenant.id, "ml")
            key = await admin.create_key(s, team.id)
            if team_budget_usd is not None:
                await admin.set_budget(s, "team", team.id, limit_usd=Decimal(team_budget_usd),
                                       limit_tokens=None, period="day", soft_limit_pct=None,
                                       webhook_url=None)
        return key.plaintext, team.id
    finally:
        await engine.dispose()


async def _rows(db_url: str) -> list[dict[str, Any]]:
    engine, _ = connect(db_url)
    try:
        async with engine.connect() as c:
            res = await c.execute(text(
                "SELECT request_id, prompt_tokens, completion_tokens, cost_micros, status "
                "FROM ledger"))
            return [dict(r._mapping) for r in res]
    finally:
        await engine.dispose()


def ledger_rows(db_url: str, expect: int = 0, timeout: float = 30.0,
                ids: set[str] | None = None) -> list[dict[str, Any]]:
    """The ledger once it holds at least `expect` rows and every id in `ids` (it is written in
    batches, and by another replica after a crash)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = asyncio.run(_rows(db_url))
        have = {r["request_id"] for r in rows}
        if (len(rows) >= expect and (ids or set()) <= have) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def sim_usage(*sims: SimServer) -> dict[str, tuple[int, int]]:
    """(prompt, completion) tokens each simulator reported, per gateway request id.

    A request retried on another replica has several records (a failed attempt reports 0/0).
    """
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for sim in sims:
        for rec in sim.usage(limit=2000)["recent"]:
            rid = rec.get("x_request_id")
            if rid:
                out[rid][0] += rec["prompt_tokens"]
                out[rid][1] += rec["completion_tokens"]
    return {k: (v[0], v[1]) for k, v in out.items()}
