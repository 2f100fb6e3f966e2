"""The dashboard in headless Chromium: it signs in, draws its charts, and every number it shows
equals the API it came from (reports, insights, budgets). Saves docs/dashboard.png."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import World
from tests.gateway.admin_support import MASTER, ok

pytestmark = pytest.mark.browser

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
CHARTS = ("spend-chart", "savings-chart", "cache-chart", "router-chart")
PAINTED = """(id) => {
  const c = document.getElementById(id);
  const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) n++;
  return n;
}"""
DATASETS = """(id) => Chart.getChart(document.getElementById(id)).data.datasets
  .map((d) => ({label: d.label, id: d.id ?? null, micros: d.micros ?? null, data: d.data}))"""
LABELS = "(id) => Chart.getChart(document.getElementById(id)).data.labels"


class Page:
    """One signed-in browser tab, with the console watched for errors."""

    def __init__(self, browser: Any, world: World) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(world.gw.url + "/dashboard")
        self.page.wait_for_selector("body[data-state=signed-out]")

    def sign_in(self, key: str, state: str = "ready") -> None:
        self.page.fill("#key", key)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_selector(f"body[data-state={state}]")

    def pick_team(self, team_id: str) -> None:
        self.page.select_option("#team", team_id)
        self.page.wait_for_selector("body[data-state=ready]")

    def value(self, selector: str) -> str:
        v = self.page.get_attribute(selector, "data-value")
        assert v is not None, f"{selector} has no data-value"
        return v

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, world: World) -> Iterator[Page]:
    p = Page(browser, world)
    try:
        yield p
    finally:
        p.close()


def day_range(days: int = 30) -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": (today - timedelta(days=days - 1)).isoformat(),
            "to": (today + timedelta(days=1)).isoformat()}


# The page's formatting, checked loosely: the text must show the API value, rounded.

def assert_usd(text: str, micros: int) -> None:
    m = re.fullmatch(r"(-?)\$([\d,]+)\.(\d+)", text.strip())
    assert m, f"not a dollar amount: {text!r}"
    shown = float(m.group(2).replace(",", "") + "." + m.group(3)) * (-1 if m.group(1) else 1)
    digits = len(m.group(3))
    assert digits == (4 if abs(micros) < 1_000_000 else 2), text
    assert abs(shown - micros / 1e6) <= 0.5 * 10 ** -digits + 1e-9, (text, micros)


def assert_pct(text: str, ratio: float | None) -> None:
    if ratio is None:
        assert text.strip() == "\u2013"  # an en dash: no value
        return
    m = re.match(r"([\d.]+)%", text.strip())
    assert m, f"not a percentage: {text!r}"
    assert abs(float(m.group(1)) - 100 * ratio) <= 0.05 + 1e-9, (text, ratio)


def check_kpis(tab: Page, totals: dict[str, Any], split: dict[str, Any]) -> None:
    for field in ("cost", "baseline", "savings"):
        micros = totals[f"{field}_micros"]
        assert int(tab.value(f"#kpi-{field}")) == micros
        assert_usd(tab.text(f"#kpi-{field}"), micros)
    assert int(tab.value("#kpi-requests")) == totals["requests"]
    assert tab.text("#kpi-requests") == f"{totals['requests']:,}"
    assert int(tab.value("#kpi-errors")) == totals["errors"]
    assert int(tab.value("#kpi-cache-hits")) == totals["cache_hits"]
    hit_rate = totals["cache_hits"] / totals["requests"]
    assert float(tab.value("#kpi-cache")) == pytest.approx(hit_rate, rel=1e-12)
    assert_pct(tab.text("#kpi-cache"), hit_rate)
    saved = totals["savings_micros"] / totals["baseline_micros"]
    assert float(tab.value("#kpi-savings-pct")) == pytest.approx(saved, rel=1e-12)
    assert float(tab.value("#kpi-large")) == split["large_share"]
    assert_pct(tab.text("#kpi-large"), split["large_share"])
    assert int(tab.value("#kpi-routed")) == split["routed"]


def check_savings_table(tab: Page, totals: dict[str, Any]) -> None:
    other = (totals["savings_micros"] - totals["cache_savings_micros"]
             - totals["routing_savings_micros"])
    for key, micros in (("baseline", totals["baseline_micros"]), ("cost", totals["cost_micros"]),
                        ("cache_savings", totals["cache_savings_micros"]),
                        ("routing_savings", totals["routing_savings_micros"]),
                        ("other_savings", other), ("savings", totals["savings_micros"])):
        cell = f"#savings-table tr[data-key={key}] td"
        assert int(tab.value(cell)) == micros
        assert_usd(tab.text(cell), micros)


def check_spend_chart(tab: Page, rows: list[dict[str, Any]], by: str, days: list[str]) -> None:
    """The stacked bars hold exactly the report's cost per (team or key, day)."""
    assert tab.page.evaluate(LABELS, "spend-chart") == days
    want: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    for r in rows:
        want[r[f"{by}_id"]][days.index(r["day"])] += r["cost_micros"]
    got = {d["id"]: d["micros"] for d in tab.page.evaluate(DATASETS, "spend-chart")}
    assert got == dict(want)


def check_top(tab: Page, table: str, rows: list[dict[str, Any]], key: str,
              cells: list[Any]) -> None:
    top = sorted(rows, key=lambda r: (-r["cost_micros"], -r["requests"]))[:10]
    shown = tab.page.eval_on_selector_all(
        f"#{table} tbody tr", "rows => rows.map(r => [r.dataset.key, "
        "[...r.querySelectorAll('td[data-value]')].map(td => td.dataset.value)])")
    assert [k for k, _ in shown] == [r[key] for r in top]
    for (_, values), r in zip(shown, top, strict=True):
        assert [int(v) for v in values] == [c(r) for c in cells]


def check_router(tab: Page, split: dict[str, Any]) -> None:
    data = tab.page.evaluate(DATASETS, "router-chart")[0]["data"]
    assert split["routed"] > 0
    assert data == [r["routed"] for r in split["rows"]]
    assert [r["pool"] for r in split["rows"] if r["large"]] == ["large"]


def check_painted(tab: Page, charts: tuple[str, ...]) -> None:
    for chart in charts:
        assert tab.page.evaluate(PAINTED, chart) > 500, f"{chart} drew nothing"


def check_burn_down(tab: Page, budget: dict[str, Any], daily: dict[str, Any]) -> None:
    limit, spent = budget["limit_micros"], daily["totals"]["cost_micros"]
    assert spent > 0
    assert int(tab.value("#budget-limit")) == limit
    assert int(tab.value("#budget-spent")) == spent
    assert int(tab.value("#budget-left")) == limit - spent
    assert_usd(tab.text("#budget-spent"), spent)
    assert float(tab.value("#budget-used-pct")) == budget["current"]["used_pct"]
    assert int(tab.value("#budget-held")) == budget["current"]["held_micros"]
    remaining = tab.page.evaluate(DATASETS, "budget-chart")[0]["micros"]
    today = datetime.now(UTC).date().isoformat()
    labels = tab.page.evaluate(LABELS, "budget-chart")
    # Cumulative: remaining = limit - spend so far, day by day, up to today.
    by_day = {r["day"]: r["cost_micros"] for r in daily["rows"]}
    running = limit
    for day, left in zip(labels, remaining, strict=True):
        running -= by_day.get(day, 0)
        assert left == (running if day <= today else None), day
    assert [x for x in remaining if x is not None][-1] == limit - spent
    check_painted(tab, ("budget-chart",))


def test_master_key_sees_every_team(tab: Page, world: World) -> None:
    tab.sign_in(MASTER)
    rng = day_range()
    with world.admin() as admin:
        spend = ok(admin.get("/admin/reports/usage", params={**rng, "group_by": "team,day"}))
        keys = ok(admin.get("/admin/reports/usage", params={**rng, "group_by": "team,key"}))
        models = ok(admin.get("/admin/reports/usage", params={**rng, "group_by": "model"}))
        split = ok(admin.get("/admin/insights/routing", params=rng))
        pools = ok(admin.get("/admin/insights/pools"))
    assert tab.text("#who") == "Master key · all teams"
    assert tab.text("#spend-title") == "Spend per team per day"
    check_kpis(tab, spend["totals"], split)
    check_savings_table(tab, spend["totals"])
    days = [(datetime.fromisoformat(rng["from"]) + timedelta(days=i)).date().isoformat()
            for i in range(30)]
    check_spend_chart(tab, spend["rows"], "team", days)
    assert len({r["team_id"] for r in spend["rows"]}) == 3
    check_top(tab, "top-keys", keys["rows"], "key_id",
              [lambda r: r["requests"], lambda r: r["cost_micros"],
               lambda r: r["savings_micros"]])
    check_top(tab, "top-models", models["rows"], "model",
              [lambda r: r["requests"], lambda r: r["prompt_tokens"] + r["completion_tokens"],
               lambda r: r["cache_hits"], lambda r: r["cost_micros"]])
    cache = tab.page.evaluate(DATASETS, "cache-chart")[0]["data"]
    assert cache == [spend["totals"]["cache_hits"],
                     spend["totals"]["requests"] - spend["totals"]["cache_hits"]]
    check_router(tab, split)
    for p in pools["data"]:
        row = f"#pools tr[data-key={p['name']}]"
        cells = tab.page.eval_on_selector_all(f"{row} td[data-value]",
                                              "tds => tds.map(td => td.dataset.value)")
        spec = p["speculation"]
        assert int(cells[0]) == p["replicas_up"] == 1
        assert int(cells[1]) == sum(r["in_flight"] for r in p["replicas"])
        if p["name"] == "large":  # the speculating pool: real acceptance from vLLM's counters
            assert spec["acceptance_rate"] is not None and 0 < spec["acceptance_rate"] < 1
            assert float(cells[4]) == spec["acceptance_rate"]
            assert float(cells[5]) == spec["mean_accepted_length"]
            assert_pct(tab.text(f"{row} td:nth-child(7)"), spec["acceptance_rate"])
        else:
            assert spec["acceptance_rate"] is None and cells[4] == ""
    assert tab.text("#budget-summary") == "Pick a team to see its budget."
    check_painted(tab, CHARTS)
    assert tab.errors == []


def test_team_view_burn_down_and_screenshot(tab: Page, world: World) -> None:
    tab.sign_in(MASTER)
    team = world.teams["acme/ml"]
    tab.pick_team(team)
    rng = day_range()
    with world.admin() as admin:
        spend = ok(admin.get("/admin/reports/usage",
                             params={**rng, "group_by": "key,day", "team": team}))
        split = ok(admin.get("/admin/insights/routing", params={**rng, "team": team}))
        budget = ok(admin.get(f"/admin/teams/{team}/budget"))
        daily = ok(admin.get("/admin/reports/usage", params={
            "from": budget["current"]["period_start"][:10],
            "to": (datetime.now(UTC).date() + timedelta(days=1)).isoformat(),
            "group_by": "day", "team": team}))
    assert budget["period"] == "total"
    assert tab.text("#spend-title") == "Spend per key per day"
    check_kpis(tab, spend["totals"], split)
    days = tab.page.evaluate(LABELS, "spend-chart")
    check_spend_chart(tab, spend["rows"], "key", days)
    assert {d["label"] for d in tab.page.evaluate(DATASETS, "spend-chart")} == {
        "ml-batch", "ml-chat"}
    check_burn_down(tab, budget, daily)
    check_painted(tab, CHARTS)
    assert tab.errors == []
    SCREENSHOT.parent.mkdir(exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 20_000


def test_team_key_sees_only_its_team(tab: Page, world: World) -> None:
    tab.sign_in(world.keys["web-app"]["key"])
    rng = day_range()
    with world.as_key("web-app") as c:
        spend = ok(c.get("/v1/usage", params={**rng, "group_by": "key,day"}))
        keys = ok(c.get("/v1/usage", params={**rng, "group_by": "team,key"}))
        split = ok(c.get("/v1/insights/routing", params=rng))
        budget = ok(c.get("/v1/insights/budget"))
        daily = ok(c.get("/v1/usage", params={
            "from": budget["current"]["period_start"][:10],
            "to": budget["current"]["period_end"][:10], "group_by": "day"}))
    assert tab.text("#who") == "Team key · web"
    assert not tab.page.is_visible("#team") and not tab.page.is_visible("#pools-card")
    check_kpis(tab, spend["totals"], split)
    check_spend_chart(tab, spend["rows"], "key", tab.page.evaluate(LABELS, "spend-chart"))
    check_top(tab, "top-keys", keys["rows"], "key_id",
              [lambda r: r["requests"], lambda r: r["cost_micros"],
               lambda r: r["savings_micros"]])
    assert {r["team"] for r in keys["rows"]} == {"web"}
    # The monthly budget's burn-down covers this month only (the history may start earlier).
    assert budget["period"] == "month"
    check_burn_down(tab, budget, daily)
    with world.admin() as admin:
        everyone = ok(admin.get("/admin/reports/usage", params={**rng, "group_by": ""}))
    assert spend["totals"]["requests"] < everyone["totals"]["requests"]
    # The key lives in this tab's sessionStorage only: not in the URL, no cookies.
    key = world.keys["web-app"]["key"]
    assert tab.page.evaluate("() => sessionStorage.getItem('frugate.key')") == key
    assert key not in tab.page.url and tab.context.cookies() == []
    assert tab.errors == []
    tab.page.click("#logout")
    tab.page.wait_for_selector("body[data-state=signed-out]")
    assert tab.page.evaluate("() => sessionStorage.getItem('frugate.key')") is None
    assert tab.page.is_visible("#login") and not tab.page.is_visible("#board")


def test_wrong_key_is_refused(tab: Page) -> None:
    tab.page.fill("#key", "fk-not-a-key")
    tab.page.click("#login-form button[type=submit]")
    tab.page.wait_for_function("() => document.getElementById('login-error').textContent")
    assert "not accepted" in tab.text("#login-error")
    assert not tab.page.is_visible("#board")
    assert tab.page.evaluate("() => sessionStorage.getItem('frugate.key')") is None
