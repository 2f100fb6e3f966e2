"""What the dashboard reads, without a browser (default suite): its static files and the
insights endpoints, checked against the ledger and the replicas' own counters."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from gateway.storage.models import LedgerEntry
from tests.browser.support import World
from tests.gateway.admin_support import ok


def _range(days: int = 30) -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": (today - timedelta(days=days - 1)).isoformat(),
            "to": (today + timedelta(days=1)).isoformat()}


def _ledger(world: World) -> list[LedgerEntry]:
    async def go() -> list[LedgerEntry]:
        async with world.gw.state.sessions() as s:
            return list((await s.scalars(select(LedgerEntry))).all())

    return world.gw.call(go())


def _expected_split(rows: list[LedgerEntry], team_id: str | None = None) -> dict[str, Any]:
    served = [r for r in rows if r.pool is not None and r.cache_status != "hit"
              and (team_id is None or r.team_id == team_id)]
    requests = Counter(r.pool for r in served)
    routed = Counter(r.pool for r in served if r.route_decision is not None)
    return {"rows": [{"pool": p, "large": p == "large", "requests": requests[p],
                      "routed": routed[p]} for p in sorted(requests)],
            "requests": len(served), "routed": sum(routed.values()),
            "large_share": requests["large"] / len(served),
            "routed_large_share": routed["large"] / sum(routed.values())}


def test_static_files_and_their_headers(world: World) -> None:
    with httpx.Client(base_url=world.gw.url) as c:
        r = c.get("/dashboard")
        assert r.status_code == 308 and r.headers["location"] == "dashboard/"
        page = c.get("/dashboard/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        for src in ("vendor/chart.umd.js", "dashboard.js", "dashboard.css"):
            assert f'"{src}"' in page.text  # relative: works behind a path prefix
            got = c.get("/dashboard/" + src)
            assert got.status_code == 200 and got.content
        assert c.get("/dashboard/vendor/chart.umd.js").headers["content-type"].startswith(
            "text/javascript")
        assert "MIT License" in c.get("/dashboard/vendor/LICENSE.md").text
        # Nothing outside the directory, and nothing but web files inside it.
        for bad in ("/dashboard/%2e%2e/routes/dashboard.py", "/dashboard/..%2fapp.py",
                    "/dashboard/..%2f..%2fpyproject.toml", "/dashboard/..%2f..%2fREADME.md",
                    "/dashboard/missing.js", "/dashboard/vendor/"):
            r = c.get(bad)
            assert r.status_code == 404, bad
            assert r.json()["error"]["code"] == "unknown_url"


def test_whoami(world: World) -> None:
    with world.admin() as admin:
        assert ok(admin.get("/v1/insights/whoami")) == {
            "role": "master", "tenant_id": None, "tenant": None, "team_id": None, "team": None,
            "key_id": None, "key_prefix": None}
    with world.as_key("research") as c:
        me = ok(c.get("/v1/insights/whoami"))
    k = world.keys["research"]
    assert me == {"role": "team", "tenant_id": k["tenant_id"], "tenant": "globex",
                  "team_id": k["team_id"], "team": "research", "key_id": k["id"],
                  "key_prefix": k["prefix"]}
    with httpx.Client(base_url=world.gw.url) as c:
        for headers in ({}, {"authorization": "Bearer fk-nope"}):
            r = c.get("/v1/insights/whoami", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_routing_split_equals_the_ledger(world: World) -> None:
    rows = _ledger(world)
    rng = _range()
    with world.admin() as admin:
        everyone = ok(admin.get("/admin/insights/routing", params=rng))
        ml = ok(admin.get("/admin/insights/routing",
                          params={**rng, "team": world.teams["acme/ml"]}))
        by_name = ok(admin.get("/admin/insights/routing",
                               params={**rng, "tenant": "acme", "team": "ml"}))
        empty = ok(admin.get("/admin/insights/routing", params={"from": "2001-01-01",
                                                               "to": "2001-02-01"}))
    for got, team in ((everyone, None), (ml, world.teams["acme/ml"])):
        want = _expected_split(rows, team)
        assert {k: got[k] for k in want} == want
        assert got["baseline_pool"] == "large"
    assert by_name == ml
    assert empty["rows"] == [] and empty["large_share"] is None
    # A team's key sees its own team's split, whatever it asks for.
    with world.as_key("web-app") as c:
        web = ok(c.get("/v1/insights/routing", params=rng))
        assert c.get("/admin/insights/routing").status_code == 403
    want = _expected_split(rows, world.keys["web-app"]["team_id"])
    assert {k: web[k] for k in want} == want


def test_pools_health_and_speculation(world: World) -> None:
    with world.admin() as admin:
        pools = {p["name"]: p for p in ok(admin.get("/admin/insights/pools"))["data"]}
    assert set(pools) == {"small", "large"}
    for name, p in pools.items():
        replica = world.gw.state.pools[name].replicas[0]
        assert p["healthy"] and p["replicas_up"] == 1
        assert p["replicas"][0]["url"] == replica.url
        assert p["replicas"][0]["speculative"] is (name == "large")
    spec = pools["large"]["speculation"]
    counters = world.gw.state.pools["large"].replicas[0].spec
    assert spec["draft_tokens"] == counters.draft_tokens > 0
    assert spec["acceptance_rate"] == counters.accepted_tokens / counters.draft_tokens
    assert spec["mean_accepted_length"] == 1 + counters.accepted_tokens / counters.drafts
    assert pools["small"]["speculation"]["acceptance_rate"] is None


def test_team_budget(world: World) -> None:
    with world.as_key("web-app") as c:
        mine = ok(c.get("/v1/insights/budget"))
    with world.admin() as admin:
        same = ok(admin.get(f"/admin/teams/{world.teams['acme/web']}/budget"))
    assert mine == same and mine["limit_micros"] == 1_000_000 and mine["period"] == "month"
    with world.as_key("research") as c:  # globex/research has no budget
        r = c.get("/v1/insights/budget")
    assert r.status_code == 404 and r.json()["error"]["code"] == "budget_not_found"
