"""The admin REST API against a real gateway, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, select, text

from gateway.accounting.prices import ModelPrice
from gateway.storage.models import LedgerEntry
from tests.gateway.admin_support import (
    BACKENDS,
    admin_client,
    database_url,
    gateway_settings,
    key_client,
    new_key,
    new_team,
    ok,
)
from tests.gateway.harness import GatewayServer
from workers.sim.process import SimServer

MSG = [{"role": "user", "content": "Say something short."}]


@pytest.fixture(scope="module", params=BACKENDS)
def gw(request: pytest.FixtureRequest, sims: dict[str, SimServer], embedder: Any,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    data = tmp_path_factory.mktemp("admin")
    with database_url(request.param, data) as url:
        settings = gateway_settings({k: s.url for k, s in sims.items()}, data, url)
        with GatewayServer(settings, embedder) as server:
            yield server


@pytest.fixture
def admin(gw: GatewayServer) -> Iterator[httpx.Client]:
    with admin_client(gw) as c:
        yield c


def chat(c: httpx.Client, model: str = "gpt-4o-mini", **extra: Any) -> httpx.Response:
    return c.post("/v1/chat/completions",
                  json={"model": model, "messages": MSG, "max_tokens": 8, **extra})


def assert_error(resp: httpx.Response, status: int, type_: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if type_ is not None:
        assert err["type"] == type_
    return err  # type: ignore[no-any-return]


def test_admin_routes_reject_anything_but_the_master_key(gw: GatewayServer,
                                                         admin: httpx.Client) -> None:
    _, team = new_team(admin)
    key = new_key(admin, team)["key"]
    routes = [("GET", "/admin/tenants"), ("POST", "/admin/keys"), ("GET", "/admin/prices"),
              ("GET", "/admin/reports/usage"), ("PUT", f"/admin/teams/{team}/budget"),
              ("POST", "/admin/keys/x/revoke")]
    for method, path in routes:
        assert_error(httpx.request(method, gw.url + path), 401, "authentication_error")
        wrong = {"authorization": "Bearer fk-not-the-master"}
        assert_error(httpx.request(method, gw.url + path, headers=wrong), 401)
        virtual = {"authorization": f"Bearer {key}"}
        err = assert_error(httpx.request(method, gw.url + path, headers=virtual), 403,
                           "permission_error")
        assert key not in err["message"]


def test_tenant_team_key_lifecycle(gw: GatewayServer, admin: httpx.Client) -> None:
    tenant, team = new_team(admin, team="ml")
    assert ok(admin.get(f"/admin/tenants/{tenant}"))["id"] == tenant
    teams = ok(admin.get("/admin/teams", params={"tenant_id": tenant}))["data"]
    assert [t["id"] for t in teams] == [team]
    created = new_key(admin, team, name="ci", scopes=["chat"])
    assert created["key"].startswith("fk-") and len(created["key"]) >= 35
    assert created["prefix"] == created["key"][:7] + "..." and created["status"] == "active"

    renamed = ok(admin.patch(f"/admin/teams/{team}", json={"name": "ml-platform"}))
    assert renamed["name"] == "ml-platform"
    patched = ok(admin.patch(f"/admin/keys/{created['id']}", json={"name": "ci-2"}))
    assert patched["name"] == "ci-2" and patched["scopes"] == ["chat"]  # untouched fields stay
    assert ok(admin.patch(f"/admin/tenants/{tenant}", json={"settings": {"tier": "gold"}})
              )["settings"] == {"tier": "gold"}
    assert_error(admin.post("/admin/teams", json={"tenant_id": tenant, "name": "ml-platform"}),
                 409)
    assert_error(admin.post("/admin/teams", json={"tenant_id": "ten_nope", "name": "x"}), 404)
    assert_error(admin.get("/admin/keys/key_nope"), 404)

    with key_client(gw, created["key"]) as c:
        assert c.get("/v1/models").status_code == 200
        ok(admin.delete(f"/admin/tenants/{tenant}"))
        # Teams and keys go with their tenant, and the key stops working at once.
        assert_error(c.get("/v1/models"), 401)
    assert_error(admin.get(f"/admin/teams/{team}"), 404)
    assert_error(admin.get(f"/admin/keys/{created['id']}"), 404)


def test_key_plaintext_is_shown_once_and_stored_nowhere(
        gw: GatewayServer, admin: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _, team = new_team(admin)
    created = new_key(admin, team)
    plain = created["key"]
    listed = admin.get("/admin/keys", params={"team_id": team}).text
    fetched = admin.get(f"/admin/keys/{created['id']}").text
    assert plain not in listed and plain not in fetched and '"key":' not in fetched
    with key_client(gw, plain) as c:
        assert chat(c).status_code == 200
        assert chat(c, model="no-such-model").status_code == 404
        assert c.get("/v1/usage").status_code == 200
    bad = plain[:-1] + ("A" if plain[-1] != "A" else "B")
    with key_client(gw, bad) as c:
        assert c.get("/v1/models").status_code == 401
    rotated = ok(admin.post(f"/admin/keys/{created['id']}/rotate", json={"grace_s": 60}))
    gw.call(gw.state.ledger.flush())

    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    dumped = gw.call(_dump_database(gw))
    for secret in (plain, bad, rotated["key"]):
        assert secret not in logged
        assert secret not in dumped
    assert created["id"] in dumped  # the dump did see the key rows


async def _dump_database(gw: GatewayServer) -> str:
    """Every row of every table, as text."""
    out = []
    async with gw.state.engine.connect() as conn:
        meta = MetaData()
        await conn.run_sync(meta.reflect)
        for table in meta.sorted_tables:
            out += [repr(tuple(row)) for row in (await conn.execute(select(table))).all()]
        if conn.dialect.name == "sqlite":
            out.append(repr((await conn.execute(text("SELECT sql FROM sqlite_master"))).all()))
    return "\n".join(out)


def test_models_scope_expiry_and_revocation(gw: GatewayServer, admin: httpx.Client) -> None:
    _, team = new_team(admin)
    assert_error(admin.post("/admin/keys", json={"team_id": team, "allowed_models": ["gpt-9"]}),
                 404)
    scoped = new_key(admin, team, allowed_models=["gpt-4o-mini"])
    with key_client(gw, scoped["key"]) as c:
        assert chat(c).status_code == 200
        assert_error(chat(c, model="gpt-4o"), 403, "permission_error")
        ok(admin.patch(f"/admin/keys/{scoped['id']}", json={"allowed_models": None}))
        assert chat(c, model="gpt-4o").status_code == 200
        ok(admin.post(f"/admin/keys/{scoped['id']}/revoke"))
        assert_error(chat(c), 401, "authentication_error")
    assert ok(admin.get(f"/admin/keys/{scoped['id']}"))["status"] == "revoked"
    assert scoped["id"] not in admin.get("/admin/keys", params={"team_id": team}).text
    assert scoped["id"] in admin.get("/admin/keys", params={"team_id": team,
                                                            "include_revoked": True}).text

    short = new_key(admin, team, expires_in_s=1)
    with key_client(gw, short["key"]) as c:
        assert c.get("/v1/models").status_code == 200
        time.sleep(1.1)
        assert assert_error(c.get("/v1/models"), 401)["code"] == "expired_api_key"
    assert ok(admin.get(f"/admin/keys/{short['id']}"))["status"] == "expired"


def test_rotated_key_keeps_working_for_its_grace_period(gw: GatewayServer,
                                                        admin: httpx.Client) -> None:
    _, team = new_team(admin)
    old = new_key(admin, team, name="svc", allowed_models=["gpt-4o-mini"], rpm=100)
    new = ok(admin.post(f"/admin/keys/{old['id']}/rotate", json={"grace_s": 1}))
    assert new["key"] != old["key"] and new["replaces"] == old["id"]
    assert (new["name"], new["allowed_models"], new["rpm"]) == ("svc", ["gpt-4o-mini"], 100)
    assert ok(admin.get(f"/admin/keys/{old['id']}"))["replaced_by"] == new["id"]
    with key_client(gw, old["key"]) as c_old, key_client(gw, new["key"]) as c_new:
        assert c_old.get("/v1/models").status_code == 200
        assert c_new.get("/v1/models").status_code == 200
        time.sleep(1.1)
        assert assert_error(c_old.get("/v1/models"), 401)["code"] == "expired_api_key"
        assert c_new.get("/v1/models").status_code == 200
    ok(admin.post(f"/admin/keys/{new['id']}/revoke"))
    err = assert_error(admin.post(f"/admin/keys/{new['id']}/rotate"), 400)  # no body: default
    assert "revoked key cannot be rotated" in err["message"]


def test_budget_takes_effect_without_restart(gw: GatewayServer, admin: httpx.Client) -> None:
    _, team = new_team(admin)
    key = new_key(admin, team)
    with key_client(gw, key["key"]) as c:
        ok(admin.put(f"/admin/teams/{team}/budget", json={"limit_usd": 0, "period": "day"}))
        err = assert_error(chat(c), 429, "budget_exceeded")
        assert team in err["message"]
        budget = ok(admin.put(f"/admin/teams/{team}/budget",
                              json={"limit_usd": 5, "period": "day", "soft_limit_pct": 80}))
        assert budget["limit_micros"] == 5_000_000 and budget["limit_usd"] == 5.0
        for _ in range(3):
            assert chat(c).status_code == 200
    shown = ok(admin.get(f"/admin/teams/{team}/budget"))
    gw.call(gw.state.ledger.flush())
    spent = gw.call(_team_cost(gw, team))
    assert shown["current"]["spent_micros"] == spent > 0
    assert shown["current"]["held_micros"] == 0
    assert shown["current"]["remaining_micros"] == 5_000_000 - spent
    assert shown["current"]["period_start"].endswith("T00:00:00Z")
    ok(admin.delete(f"/admin/teams/{team}/budget"))
    assert_error(admin.get(f"/admin/teams/{team}/budget"), 404)


async def _team_cost(gw: GatewayServer, team: str) -> int:
    async with gw.state.sessions() as s:
        rows = (await s.scalars(select(LedgerEntry.cost_micros)
                                .where(LedgerEntry.team_id == team))).all()
    return sum(rows)


def test_rate_limits_on_keys_and_teams(gw: GatewayServer, admin: httpx.Client) -> None:
    _, team = new_team(admin)
    key = new_key(admin, team)
    with key_client(gw, key["key"]) as c:
        limits = ok(admin.put(f"/admin/keys/{key['id']}/limits", json={"rpm": 2}))
        assert (limits["rpm"], limits["tpm"]) == (2, None)
        assert [chat(c).status_code for _ in range(2)] == [200, 200]
        resp = chat(c)
        assert_error(resp, 429, "rate_limit_exceeded")
        assert int(resp.headers["retry-after"]) >= 1
        ok(admin.put(f"/admin/keys/{key['id']}/limits", json={"rpm": None}))
        assert chat(c).status_code == 200
        ok(admin.put(f"/admin/teams/{team}/limits", json={"rpm": 1, "tpm": 100000}))
        assert ok(admin.get(f"/admin/teams/{team}/limits"))["tpm"] == 100000
        assert chat(c).status_code == 200
        assert_error(chat(c), 429, "rate_limit_exceeded")
    assert_error(admin.put(f"/admin/tenants/{team}/limits", json={"rpm": 1}), 400)


def test_prices_are_listed_and_overrides_bill_new_requests(gw: GatewayServer,
                                                           admin: httpx.Client) -> None:
    prices = {p["model"]: p for p in ok(admin.get("/admin/prices"))["data"]}
    assert prices["small"]["aliases"] == ["gpt-4o-mini"]
    assert prices["small"]["source"] in ("config", "admin")
    assert prices["large"]["input_micros"] == 5_000_000
    assert_error(admin.put("/admin/prices/gpt-9", json={"input": 1, "output": 1}), 404)
    new = ok(admin.put("/admin/prices/gpt-4o-mini",
                       json={"input": 0.25, "cached_input": 0.125, "output": 2}))
    assert (new["model"], new["source"], new["input_micros"], new["cached_input_micros"],
            new["output_micros"]) == ("small", "admin", 250_000, 125_000, 2_000_000)
    _, team = new_team(admin)
    key = new_key(admin, team)
    with key_client(gw, key["key"]) as c:
        resp = chat(c)
    assert resp.status_code == 200
    usage = resp.json()["usage"]
    expected = ModelPrice(250_000, 2_000_000, 125_000).cost(usage["prompt_tokens"],
                                                           usage["completion_tokens"])
    gw.call(gw.state.ledger.flush())
    assert gw.call(_team_cost(gw, team)) == expected
    assert float(resp.headers["x-frugate-cost-usd"]) == pytest.approx(expected / 1e6)

    # Removing the override brings the configured price back, live.
    back = ok(admin.delete("/admin/prices/small"))
    assert back["source"] == "config"
    assert gw.state.meter.price("small") == gw.state.meter.config_prices["small"]
    assert_error(admin.delete("/admin/prices/small"), 404)


@pytest.mark.parametrize(("path", "body"), [
    ("budget", {"limit_usd": 1, "period": "year"}),
    ("budget", {"soft_limit_pct": 80}),
    ("budget", {"limit_usd": 1, "webhook_url": "ftp://example.com/x"}),
    ("budget", {"limit_usd": -1}),
    ("budget", {"limit_usd": 1, "colour": "blue"}),
    ("limits", {"rpm": 0}),
])
def test_invalid_admin_bodies_are_400_in_openai_format(admin: httpx.Client, path: str,
                                                       body: dict[str, Any]) -> None:
    _, team = new_team(admin)
    assert_error(admin.put(f"/admin/teams/{team}/{path}", json=body), 400,
                 "invalid_request_error")


def test_openapi_documents_the_admin_api(gw: GatewayServer) -> None:
    schema = httpx.get(gw.url + "/openapi.json").json()
    paths = schema["paths"]
    for p in ("/admin/tenants", "/admin/teams", "/admin/keys", "/admin/keys/{key_id}/rotate",
              "/admin/keys/{key_id}/revoke", "/admin/{scopes}/{scope_id}/budget",
              "/admin/{scopes}/{scope_id}/limits", "/admin/prices", "/admin/prices/{model}",
              "/admin/reports/usage", "/v1/usage", "/v1/feedback"):
        assert p in paths, p
    assert set(paths["/admin/keys"]) == {"get", "post"}
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    created = paths["/admin/keys"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["$ref"].endswith("/KeyCreated")
