"""The seeded world the dashboard tests look at: three teams, four keys, two budgets, real
requests through the simulator and two weeks of ledger history (no tests here)."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx

from gateway.accounting.record import Record
from tests.gateway.admin_support import admin_client, key_client, new_key, ok
from tests.gateway.harness import GatewayServer

HISTORY_DAYS = 14


@dataclass
class World:
    gw: GatewayServer
    teams: dict[str, str]  # "tenant/team" -> id
    keys: dict[str, dict[str, Any]]  # name -> created key (with its plaintext under "key")

    def admin(self) -> httpx.Client:
        return admin_client(self.gw)

    def as_key(self, name: str) -> httpx.Client:
        return key_client(self.gw, self.keys[name]["key"])


def seed(gw: GatewayServer, admin: httpx.Client) -> World:
    teams: dict[str, str] = {}
    for tenant, names in (("acme", ("ml", "web")), ("globex", ("research",))):
        tid = ok(admin.post("/admin/tenants", json={"name": tenant}), 201)["id"]
        for name in names:
            teams[f"{tenant}/{name}"] = ok(admin.post("/admin/teams", json={
                "tenant_id": tid, "name": name}), 201)["id"]
    keys = {
        "ml-batch": new_key(admin, teams["acme/ml"], name="ml-batch"),
        "ml-chat": new_key(admin, teams["acme/ml"], name="ml-chat"),
        "web-app": new_key(admin, teams["acme/web"], name="web-app"),
        "research": new_key(admin, teams["globex/research"], name="research"),
    }
    # One budget that never resets (its burn-down covers all the history) and one monthly.
    ok(admin.put(f"/admin/teams/{teams['acme/ml']}/budget",
                 json={"limit_usd": 2.5, "period": "total"}))
    ok(admin.put(f"/admin/teams/{teams['acme/web']}/budget",
                 json={"limit_usd": 1.0, "period": "month"}))
    # Real traffic through the simulator: today's rows, and speculative-decoding counters.
    for name, model in (("ml-chat", "gpt-4o-mini"), ("ml-chat", "gpt-4o"), ("web-app", "gpt-4o"),
                        ("research", "gpt-4o-mini"), ("ml-batch", "gpt-4o")):
        with key_client(gw, keys[name]["key"]) as c:
            r = c.post("/v1/chat/completions", json={
                "model": model, "max_tokens": 24,
                "messages": [{"role": "user", "content": f"hello from {name}"}]})
            assert r.status_code == 200, r.text
    # History: priced by the meter exactly as real traffic is, written to the ledger.
    rng = random.Random(11)
    noon = datetime.combine(datetime.now(UTC).date(), time(12), UTC)
    weights = {"ml-batch": 5, "ml-chat": 3, "web-app": 2, "research": 2}
    for _ in range(240):
        name = rng.choices(list(weights), list(weights.values()))[0]
        k = keys[name]
        routed = rng.random() < 0.6
        pool_name = rng.choices(["small", "large"], [3, 1] if routed else [1, 1])[0]
        requested = "auto" if routed else ("gpt-4o-mini" if pool_name == "small" else "gpt-4o")
        rec = Record(
            request_id=f"seed_{secrets.token_hex(8)}",
            ts=noon - timedelta(days=rng.randrange(HISTORY_DAYS), minutes=rng.randrange(600)),
            tenant_id=k["tenant_id"], team_id=k["team_id"], key_id=k["id"], endpoint="chat",
            requested_model=requested, pool=pool_name, served_model=f"sim-{pool_name}",
            cache_status=rng.choices(["hit", "miss", "bypass"], [2, 6, 1])[0],
            route_decision=pool_name if routed else None,
            prompt_tokens=rng.randint(200, 3000), completion_tokens=rng.randint(20, 900),
            status=rng.choices(["ok", "upstream_error"], [19, 1])[0])
        gw.state.meter.finish(rec)
        gw.state.ledger.add(rec)
    gw.call(gw.state.ledger.flush())
    return World(gw, teams, keys)
