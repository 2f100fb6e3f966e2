"""The operator CLI (`frugate keys|budgets|report`) against a running gateway."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.cli.keys import usd_text
from tests.gateway.admin_support import (
    MASTER,
    admin_client,
    database_url,
    gateway_settings,
    key_client,
    ok,
)
from tests.gateway.harness import GatewayServer
from workers.sim.process import SimServer

KEY = re.compile(r"fk-[A-Za-z0-9_-]{30,}")


@pytest.fixture(scope="module")
def gw(sims: dict[str, SimServer], embedder: Any,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    data = tmp_path_factory.mktemp("cli")
    with database_url("sqlite", data) as url:
        settings = gateway_settings({k: s.url for k, s in sims.items()}, data, url)
        with GatewayServer(settings, embedder) as server, admin_client(server) as admin:
            tenant = ok(admin.post("/admin/tenants", json={"name": "acme"}), 201)
            ok(admin.post("/admin/teams", json={"tenant_id": tenant["id"], "name": "ml"}), 201)
            yield server


def frugate(gw: GatewayServer, *args: str, master: str | None = MASTER) -> Any:
    env = {"COLUMNS": "220", "FRUGATE_URL": gw.url, "FRUGATE_MASTER_KEY": master}
    return CliRunner().invoke(app, list(args), env=env)


def works(gw: GatewayServer, key: str) -> bool:
    with key_client(gw, key) as c:
        return c.get("/v1/models").status_code == 200


def test_keys_create_list_rotate_revoke(gw: GatewayServer) -> None:
    made = frugate(gw, "keys", "create", "--team", "ml", "--tenant", "acme", "--name", "ci",
                   "--models", "gpt-4o-mini,gpt-4o", "--expires-in", "30d")
    assert made.exit_code == 0, made.output
    [key] = KEY.findall(made.output)
    key_id = re.search(r"key_[0-9a-f]{16}", made.output).group(0)  # type: ignore[union-attr]
    assert works(gw, key)

    listed = frugate(gw, "keys", "list", "--team", "ml")
    assert listed.exit_code == 0, listed.output
    assert key_id in listed.output and key[:7] in listed.output and key not in listed.output
    assert "gpt-4o-mini, gpt-4o" in listed.output and "active" in listed.output

    rotated = frugate(gw, "keys", "rotate", key_id, "--grace", "1h")
    assert rotated.exit_code == 0, rotated.output
    [new] = KEY.findall(rotated.output)
    assert new != key and works(gw, new) and works(gw, key)  # old one: grace period

    revoked = frugate(gw, "keys", "revoke", key_id)
    assert revoked.exit_code == 0 and "Revoked" in revoked.output
    assert not works(gw, key) and works(gw, new)
    assert key_id not in frugate(gw, "keys", "list").output
    assert "revoked" in frugate(gw, "keys", "list", "--all", "--tenant", "acme").output


def test_budgets_set_and_show(gw: GatewayServer) -> None:
    out = frugate(gw, "budgets", "set", "--team", "ml", "--limit-usd", "12.5", "--period",
                  "week", "--soft-limit-pct", "80", "--webhook-url", "https://hooks.example/x")
    assert out.exit_code == 0, out.output
    assert "$12.5000" in out.output and "80%" in out.output and "week" in out.output
    shown = frugate(gw, "budgets", "show", "--team", "ml", "--tenant", "acme")
    assert shown.exit_code == 0 and "$12.5000" in shown.output and "remaining" in shown.output
    with admin_client(gw) as admin:
        team = ok(admin.get("/admin/teams", params={"name": "ml"}))["data"][0]
        assert ok(admin.get(f"/admin/teams/{team['id']}/budget"))["limit_micros"] == 12_500_000
        ok(admin.delete(f"/admin/teams/{team['id']}/budget"))
    assert frugate(gw, "budgets", "set", "--limit-usd", "1").exit_code == 1  # whose?


def test_report_table_and_csv(gw: GatewayServer) -> None:
    made = frugate(gw, "keys", "create", "--team", "ml")
    [key] = KEY.findall(made.output)
    with key_client(gw, key) as c:
        for model in ("gpt-4o-mini", "gpt-4o", "gpt-4o-mini"):
            r = c.post("/v1/chat/completions", json={
                "model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
    gw.call(gw.state.ledger.flush())
    table = frugate(gw, "report", "--team", "ml", "--group-by", "team,model")
    assert table.exit_code == 0, table.output
    assert "ml" in table.output and "sim-small" in table.output and "sim-large" in table.output
    assert "total" in table.output and "savings" in table.output

    as_csv = frugate(gw, "report", "--team", "ml", "--group-by", "model", "--csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert int(rows["sim-small"]["requests"]) == 2 and int(rows["sim-large"]["requests"]) == 1
    with admin_client(gw) as admin:
        api = ok(admin.get("/admin/reports/usage", params={"team": "ml", "group_by": "model"}))
    for r in api["rows"]:
        assert int(rows[r["model"]]["cost_micros"]) == r["cost_micros"]
        assert usd_text(r["cost_usd"]) in table.output


def test_errors_are_one_readable_line(gw: GatewayServer) -> None:
    no_key = frugate(gw, "keys", "list", master=None)
    assert no_key.exit_code == 1 and "no master key" in no_key.output
    wrong = frugate(gw, "keys", "list", master="fk-wrong")
    assert wrong.exit_code == 1 and "master key" in wrong.output and "HTTP 401" in wrong.output
    missing = frugate(gw, "keys", "create", "--team", "nope")
    assert missing.exit_code == 1 and "no team named 'nope'" in missing.output
    down = CliRunner().invoke(app, ["keys", "list", "--url", "http://127.0.0.1:9"],
                              env={"FRUGATE_MASTER_KEY": MASTER})
    assert down.exit_code == 1 and "cannot reach the gateway" in down.output
    bad = frugate(gw, "keys", "create", "--team", "ml", "--expires-in", "soon")
    assert bad.exit_code == 2
    assert httpx.get(gw.url + "/healthz").status_code == 200
