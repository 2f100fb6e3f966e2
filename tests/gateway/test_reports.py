"""Usage reports, /v1/usage and /v1/feedback against the ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import itertools
import random
import secrets
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.accounting.record import Record
from gateway.storage.models import Feedback, LedgerEntry
from tests.gateway.admin_support import (
    BACKENDS,
    admin_client,
    database_url,
    gateway_settings,
    key_client,
    new_key,
    ok,
)
from tests.gateway.harness import GatewayServer
from workers.sim.process import SimServer

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
MEASURES = ("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens",
            "cost_micros", "baseline_micros", "savings_micros", "cache_savings_micros",
            "routing_savings_micros")


@dataclass
class World:
    gw: GatewayServer
    tenants: dict[str, str]  # name -> id
    teams: dict[str, str]  # "tenant/team" -> id
    keys: dict[str, dict[str, Any]]  # label -> created key
    request_ids: dict[str, list[str]]  # key label -> ids of real requests


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, sims: dict[str, SimServer], embedder: Any,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = tmp_path_factory.mktemp("reports")
    with database_url(request.param, data) as url:
        settings = gateway_settings({k: s.url for k, s in sims.items()}, data, url)
        with GatewayServer(settings, embedder) as gw, admin_client(gw) as admin:
            yield _populate(gw, admin)


def _populate(gw: GatewayServer, admin: httpx.Client) -> World:
    tenants, teams, keys = {}, {}, {}
    for tenant in ("acme", "globex"):
        tenants[tenant] = ok(admin.post("/admin/tenants", json={"name": tenant}), 201)["id"]
        for team in ("ml", "web"):
            teams[f"{tenant}/{team}"] = ok(admin.post("/admin/teams", json={
                "tenant_id": tenants[tenant], "name": team}), 201)["id"]
    keys["a1"] = new_key(admin, teams["acme/ml"], name="a1")
    keys["a2"] = new_key(admin, teams["acme/ml"], name="a2")
    keys["b1"] = new_key(admin, teams["acme/web"], name="b1")
    keys["g1"] = new_key(admin, teams["globex/ml"], name="g1")
    # Real traffic (today), then synthetic history over three days around midnight.
    request_ids: dict[str, list[str]] = defaultdict(list)
    for label, model in (("a1", "gpt-4o-mini"), ("a1", "gpt-4o"), ("a2", "gpt-4o-mini"),
                         ("b1", "gpt-4o"), ("g1", "gpt-4o-mini")):
        with key_client(gw, keys[label]["key"]) as c:
            r = c.post("/v1/chat/completions", json={
                "model": model, "max_tokens": 6,
                "messages": [{"role": "user", "content": f"hello from {label}"}]})
            assert r.status_code == 200, r.text
            request_ids[label].append(r.headers["x-frugate-request-id"])
    rng = random.Random(7)
    for i in range(60):
        label = rng.choice(list(keys))
        k = keys[label]
        pool = rng.choice(["small", "large"])
        rec = Record(
            request_id=f"syn_{secrets.token_hex(8)}",
            ts=DAY0 + timedelta(hours=rng.choice([0, 5, 23.99, 24, 30, 47.9, 48, 60]),
                                seconds=i),
            tenant_id=k["tenant_id"], team_id=k["team_id"], key_id=k["id"], endpoint="chat",
            requested_model=rng.choice(["auto", "gpt-4o-mini", "gpt-4o"]), pool=pool,
            served_model=f"sim-{pool}", cache_status=rng.choice(["hit", "miss", "bypass"]),
            route_decision=rng.choice([None, "small", "large"]),
            prompt_tokens=rng.randint(1, 900), cached_tokens=0,
            completion_tokens=rng.randint(0, 400),
            status=rng.choice(["ok", "ok", "ok", "upstream_error", "client_abort"]))
        gw.state.meter.finish(rec)  # cost, baseline and the savings split, as for real traffic
        gw.state.ledger.add(rec)
    gw.call(gw.state.ledger.flush())
    return World(gw, tenants, teams, keys, dict(request_ids))


def ledger_rows(w: World) -> list[LedgerEntry]:
    async def go() -> list[LedgerEntry]:
        async with w.gw.state.sessions() as s:
            return list((await s.scalars(select(LedgerEntry))).all())

    return w.gw.call(go())


def expected(rows: list[LedgerEntry], group_by: tuple[str, ...], start: datetime,
             end: datetime, team_id: str | None = None) -> dict[tuple[Any, ...], dict[str, int]]:
    """The report computed independently, in Python, from the ledger rows."""
    out: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(MEASURES, 0))
    for r in rows:
        ts = r.ts if r.ts.tzinfo else r.ts.replace(tzinfo=UTC)
        if not start <= ts < end or (team_id and r.team_id != team_id):
            continue
        dims = {"tenant": r.tenant_id, "team": r.team_id, "key": r.key_id,
                "model": r.served_model or r.requested_model,
                "day": ts.astimezone(UTC).date().isoformat()}
        acc = out[tuple(dims[d] for d in group_by)]
        saved = max(0, r.baseline_micros - r.cost_micros)
        acc["requests"] += 1
        acc["errors"] += r.status != "ok"
        acc["cache_hits"] += r.cache_status == "hit"
        acc["prompt_tokens"] += r.prompt_tokens
        acc["completion_tokens"] += r.completion_tokens
        acc["cost_micros"] += r.cost_micros
        acc["baseline_micros"] += r.baseline_micros
        acc["savings_micros"] += r.baseline_micros - r.cost_micros
        acc["cache_savings_micros"] += saved if r.cache_status == "hit" else 0
        acc["routing_savings_micros"] += (saved if r.cache_status != "hit"
                                          and r.route_decision is not None else 0)
    return dict(out)


def got(report: dict[str, Any], group_by: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, int]]:
    col = {"tenant": "tenant_id", "team": "team_id", "key": "key_id", "model": "model",
           "day": "day"}
    return {tuple(r[col[d]] for d in group_by): {m: r[m] for m in MEASURES}
            for r in report["rows"]}


def report(w: World, **params: Any) -> dict[str, Any]:
    with admin_client(w.gw) as admin:
        return ok(admin.get("/admin/reports/usage", params=params))  # type: ignore[no-any-return]


GROUPINGS = [(), ("team",), ("team", "model"), ("day",), ("tenant", "team", "key", "model", "day"),
             ("model", "day"), ("key",)]


@pytest.mark.parametrize("group_by", GROUPINGS, ids=lambda g: ",".join(g) or "none")
def test_report_matches_the_ledger_from_both_sources(world: World,
                                                     group_by: tuple[str, ...]) -> None:
    rows = ledger_rows(world)
    start, end = DAY0, DAY0 + timedelta(days=3)
    want = expected(rows, group_by, start, end)
    assert sum(v["requests"] for v in want.values()) == 60
    for source in ("ledger", "rollup", "auto"):
        rep = report(world, **{"from": "2026-03-01", "to": "2026-03-04",
                               "group_by": ",".join(group_by), "source": source})
        assert rep["source"] == ("rollup" if source == "auto" else source)
        assert got(rep, group_by) == want
        for m in MEASURES:
            assert rep["totals"][m] == sum(v[m] for v in want.values())
        for r in rep["rows"]:
            assert r["cost_usd"] == pytest.approx(r["cost_micros"] / 1e6)
            assert r["savings_usd"] == pytest.approx(r["savings_micros"] / 1e6)


def test_partial_day_ranges_read_the_ledger(world: World) -> None:
    rows = ledger_rows(world)
    start, end = DAY0 + timedelta(hours=5), DAY0 + timedelta(hours=47, minutes=54)
    rep = report(world, **{"from": start.isoformat(), "to": end.isoformat(),
                           "group_by": "day,team"})
    assert rep["source"] == "ledger"
    want = expected(rows, ("day", "team"), start, end)
    assert got(rep, ("day", "team")) == want
    assert {r["day"] for r in rep["rows"]} == {"2026-03-01", "2026-03-02"}
    with admin_client(world.gw) as admin:
        bad = admin.get("/admin/reports/usage", params={"from": start.isoformat(),
                                                        "source": "rollup"})
    assert bad.status_code == 400


def test_real_requests_appear_in_todays_report_with_labels(world: World) -> None:
    rep = report(world, group_by="tenant,team,key", tenant="acme")
    by_key = {r["key_id"]: r for r in rep["rows"]}
    assert set(by_key) == {world.keys[k]["id"] for k in ("a1", "a2", "b1")}
    a1 = by_key[world.keys["a1"]["id"]]
    assert (a1["tenant"], a1["team"], a1["key_name"]) == ("acme", "ml", "a1")
    assert a1["key_prefix"] == world.keys["a1"]["prefix"]
    assert a1["requests"] == 2 and a1["prompt_tokens"] > 0 and a1["cost_micros"] > 0
    # The large pool is the baseline: small-pool requests save money, large ones don't.
    a2 = by_key[world.keys["a2"]["id"]]
    assert a2["baseline_micros"] > a2["cost_micros"] and a2["savings_micros"] > 0


def test_filters_by_name_and_ambiguity(world: World) -> None:
    with admin_client(world.gw) as admin:
        r = admin.get("/admin/reports/usage", params={"team": "ml"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "ambiguous_name"
        rep = ok(admin.get("/admin/reports/usage", params={"team": "ml", "tenant": "globex",
                                                           "group_by": "team"}))
        assert [row["team_id"] for row in rep["rows"]] == [world.teams["globex/ml"]]
        by_id = ok(admin.get("/admin/reports/usage", params={
            "team": world.teams["globex/ml"], "group_by": "team"}))
        assert by_id["rows"] == rep["rows"]
        assert admin.get("/admin/reports/usage", params={"team": "nope"}).status_code == 404
        for params in ({"group_by": "team,colour"}, {"from": "yesterday"},
                       {"from": "2026-03-02", "to": "2026-03-01"}):
            err = admin.get("/admin/reports/usage", params=params)
            assert err.status_code == 400 and err.json()["error"]["type"] == \
                "invalid_request_error"


def test_csv_parses_and_matches_json(world: World) -> None:
    params = {"from": "2026-03-01", "to": "2026-03-04", "group_by": "team,key,day"}
    rep = report(world, **params)
    with admin_client(world.gw) as admin:
        resp = admin.get("/admin/reports/usage", params={**params, "format": "csv"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert len(rows) == len(rep["rows"]) > 0
    assert {"team_id", "team", "key_id", "key_prefix", "day", "requests", "cost_usd",
            "cost_micros", "cache_savings_usd", "routing_savings_micros"} <= set(rows[0])
    for c, j in zip(rows, rep["rows"], strict=True):
        assert (c["team_id"], c["key_id"], c["day"]) == (j["team_id"], j["key_id"], j["day"])
        for m in MEASURES:
            assert int(c[m]) == j[m]
        assert float(c["cost_usd"]) == pytest.approx(j["cost_usd"])


def test_v1_usage_shows_only_the_callers_team(world: World) -> None:
    rows = ledger_rows(world)
    team_a = world.keys["a1"]["team_id"]
    params = {"from": "2026-03-01", "to": "2026-03-04", "group_by": "team,key"}
    with key_client(world.gw, world.keys["a2"]["key"]) as c:
        mine = ok(c.get("/v1/usage", params=params))
        # Asking for other teams or tenants changes nothing: the team is forced.
        sneaky = ok(c.get("/v1/usage", params={**params, "team": world.teams["globex/ml"],
                                               "tenant": world.tenants["globex"]}))
        other_key = ok(c.get("/v1/usage", params={**params, "key": world.keys["g1"]["id"]}))
        as_csv = c.get("/v1/usage", params={**params, "format": "csv"})
    assert {r["team_id"] for r in mine["rows"]} == {team_a}
    assert got(mine, ("team", "key")) == expected(rows, ("team", "key"), DAY0,
                                                  DAY0 + timedelta(days=3), team_a)
    assert sneaky["rows"] == mine["rows"]
    assert other_key["rows"] == [] and other_key["totals"]["requests"] == 0
    assert {r["team_id"] for r in csv.DictReader(io.StringIO(as_csv.text))} == {team_a}
    with key_client(world.gw, world.keys["g1"]["key"]) as c:
        theirs = ok(c.get("/v1/usage", params=params))
    assert {r["team_id"] for r in theirs["rows"]} == {world.teams["globex/ml"]}
    assert httpx.get(world.gw.url + "/v1/usage").status_code == 401


def test_feedback_only_for_the_callers_own_requests(world: World) -> None:
    own = world.request_ids["a1"][0]
    teammate = world.request_ids["a2"][0]  # same team, another key: allowed
    foreign = world.request_ids["g1"][0]
    with key_client(world.gw, world.keys["a1"]["key"]) as c:
        first = ok(c.post("/v1/feedback", json={"request_id": own, "score": 1}), 201)
        ok(c.post("/v1/feedback", json={"request_id": teammate, "score": 0.25,
                                        "comment": "meh"}), 201)
        for rid in (foreign, "req_nope"):
            r = c.post("/v1/feedback", json={"request_id": rid, "score": 1})
            assert r.status_code == 404 and r.json()["error"]["code"] == "request_not_found"
        assert c.post("/v1/feedback", json={"request_id": own, "score": 2}).status_code == 400
        assert c.post("/v1/feedback", json={"score": 1}).status_code == 400
    assert first["request_id"] == own and first["score"] == 1
    assert httpx.post(world.gw.url + "/v1/feedback",
                      json={"request_id": own, "score": 1}).status_code == 401

    async def stored() -> list[tuple[str, str, str, float]]:
        async with world.gw.state.sessions() as s:
            q = select(Feedback.request_id, Feedback.team_id, Feedback.key_id, Feedback.score)
            return [tuple(r) for r in (await s.execute(q)).all()]  # type: ignore[misc]

    team_a = world.keys["a1"]["team_id"]
    assert sorted(world.gw.call(stored())) == sorted([
        (own, team_a, world.keys["a1"]["id"], 1.0),
        (teammate, team_a, world.keys["a1"]["id"], 0.25)])


def test_every_grouping_is_accepted(world: World) -> None:
    dims = ("tenant", "team", "key", "model", "day")
    for n in (1, 2):
        for combo in itertools.combinations(dims, n):
            rep = report(world, group_by=",".join(combo))
            assert rep["group_by"] == list(combo)
            assert rep["totals"]["requests"] == 5  # today's real requests
