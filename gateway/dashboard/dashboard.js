// The frugate usage dashboard.
//
// Every number on the page comes from one gateway API response: the usage report
// (GET /admin/reports/usage with the master key, GET /v1/usage with a team's key), the
// insights endpoints (routing split, pool health, a team's budget) and the admin budget API.
// Each figure is rendered with its raw API value in `data-value`, so a test, or a curious
// operator, can check the page against the API. Chart.js (vendored) is `window.Chart`.

const KEY = "frugate.key"; // sessionStorage: gone when the tab closes; never in a URL or cookie
const ROOT = new URL("../", document.baseURI); // the gateway (works behind a path prefix too)
const MICROS = 1_000_000;
const PALETTE = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#0891b2", "#db2777", "#65a30d",
  "#ca8a04", "#4f46e5", "#dc2626"];
const session = { key: null, role: null, teams: [] }; // role: "master" | "team"

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, params = {}) {
  const url = new URL(path, ROOT);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const resp = await fetch(url, {
    headers: { authorization: `Bearer ${session.key}` },
    cache: "no-store",
  });
  const body = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, body?.error?.message ?? resp.statusText);
  return body;
}

// -- formatting -----------------------------------------------------------------------------

function usd(micros) {
  const value = micros / MICROS;
  const digits = Math.abs(value) < 1 ? 4 : 2; // small test or trial spends stay readable
  return value.toLocaleString("en-US", {
    style: "currency", currency: "USD", minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

const count = (n) => n.toLocaleString("en-US");
const pct = (ratio) => (ratio === null || ratio === undefined ? "–" : `${(ratio * 100).toFixed(1)}%`);
const ratio = (part, whole) => (whole ? part / whole : null);

// Show `text`, and keep the API value it stands for in data-value.
function show(el, value, text) {
  el.dataset.value = value === null || value === undefined ? "" : String(value);
  el.textContent = text;
  return el;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function numberCell(value, text) {
  return show(el("td"), value, text);
}

function table(id, headers, rows) {
  const t = $(id);
  t.replaceChildren(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
  return t;
}

// UTC calendar days as "YYYY-MM-DD", `offset` days from today.
function isoDay(offset = 0, from = new Date()) {
  const d = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate()));
  d.setUTCDate(d.getUTCDate() + offset);
  return d.toISOString().slice(0, 10);
}

function daysBetween(start, end) { // [start, end), both "YYYY-MM-DD"
  const out = [];
  for (let d = new Date(`${start}T00:00:00Z`); isoDay(0, d) < end; d.setUTCDate(d.getUTCDate() + 1)) {
    out.push(isoDay(0, d));
  }
  return out;
}

// -- charts ---------------------------------------------------------------------------------

function chart(id, config) {
  const canvas = $(id);
  window.Chart.getChart(canvas)?.destroy();
  return new window.Chart(canvas, config);
}

function clearChart(id) {
  window.Chart.getChart($(id))?.destroy();
}

// Axis ticks: three significant digits are enough to read a chart.
const moneyAxis = {
  ticks: { callback: (v) => v.toLocaleString("en-US", { style: "currency", currency: "USD", maximumSignificantDigits: 3 }) },
};

// -- data -----------------------------------------------------------------------------------

function selectedTeam() {
  return session.role === "master" ? $("team").value : "";
}

function report(params) {
  if (session.role === "master") {
    return api("admin/reports/usage", { ...params, team: selectedTeam() });
  }
  return api("v1/usage", params);
}

async function load() {
  document.body.dataset.state = "loading";
  $("error").hidden = true;
  const days = Number($("days").value);
  const range = { from: isoDay(-(days - 1)), to: isoDay(1) };
  const master = session.role === "master";
  const byTeam = master && !selectedTeam(); // all teams: spend per team; one team: per key
  const [spend, keys, models, split, pools] = await Promise.all([
    report({ ...range, group_by: byTeam ? "team,day" : "key,day" }),
    report({ ...range, group_by: "team,key" }),
    report({ ...range, group_by: "model" }),
    master ? api("admin/insights/routing", { ...range, team: selectedTeam() })
      : api("v1/insights/routing", range),
    master ? api("admin/insights/pools") : null,
  ]);
  $("range").textContent = `${range.from} to ${isoDay(0)} (UTC), from the ${spend.source}.`;
  renderKpis(spend.totals, split);
  renderSpend(spend.rows, daysBetween(range.from, range.to), byTeam);
  renderSavings(spend.totals);
  renderCache(spend.totals);
  renderRouter(split);
  renderTopKeys(keys.rows);
  renderTopModels(models.rows);
  renderPools(pools);
  await loadBudget();
  document.body.dataset.state = "ready";
}

function renderKpis(t, split) {
  show($("kpi-cost"), t.cost_micros, usd(t.cost_micros));
  show($("kpi-baseline"), t.baseline_micros, usd(t.baseline_micros));
  show($("kpi-savings"), t.savings_micros, usd(t.savings_micros));
  const saved = ratio(t.savings_micros, t.baseline_micros);
  show($("kpi-savings-pct"), saved, `${pct(saved)} of the baseline`);
  show($("kpi-requests"), t.requests, count(t.requests));
  show($("kpi-errors"), t.errors, `${count(t.errors)} errors`);
  const hits = ratio(t.cache_hits, t.requests);
  show($("kpi-cache"), hits, pct(hits));
  show($("kpi-cache-hits"), t.cache_hits, `${count(t.cache_hits)} hits`);
  show($("kpi-large"), split.large_share, pct(split.large_share));
  show($("kpi-routed"), split.routed, `${count(split.routed)} routed by policy`);
}

function renderSpend(rows, days, byTeam) {
  $("spend-title").textContent = byTeam ? "Spend per team per day" : "Spend per key per day";
  const series = new Map(); // team or key id -> {label, micros per day}
  for (const r of rows) {
    const id = byTeam ? r.team_id : r.key_id;
    if (!series.has(id)) {
      const label = byTeam ? (r.team ?? id) : (r.key_name || r.key_prefix || id);
      series.set(id, { label, micros: days.map(() => 0) });
    }
    const i = days.indexOf(r.day);
    if (i >= 0) series.get(id).micros[i] += r.cost_micros;
  }
  const datasets = [...series.entries()].map(([id, s], i) => ({
    label: s.label, id, micros: s.micros, data: s.micros.map((m) => m / MICROS),
    backgroundColor: PALETTE[i % PALETTE.length],
  }));
  chart("spend-chart", {
    type: "bar",
    data: { labels: days, datasets },
    options: {
      scales: { x: { stacked: true }, y: { stacked: true, ...moneyAxis } },
      plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${usd(c.dataset.micros[c.dataIndex])}` } } },
    },
  });
}

function renderSavings(t) {
  const other = t.savings_micros - t.cache_savings_micros - t.routing_savings_micros;
  const parts = [
    ["Spend", t.cost_micros, "#64748b"],
    ["Cache savings", t.cache_savings_micros, "#16a34a"],
    ["Routing savings", t.routing_savings_micros, "#2563eb"],
    ["Cheaper model chosen", other, "#ca8a04"],
  ];
  const datasets = [
    { label: "All-large baseline", micros: [t.baseline_micros, 0], data: [t.baseline_micros / MICROS, null], backgroundColor: "#94a3b8" },
    ...parts.map(([label, m, color]) => ({ label, micros: [0, m], data: [null, m / MICROS], backgroundColor: color })),
  ];
  chart("savings-chart", {
    type: "bar",
    data: { labels: ["Baseline", "Actual"], datasets },
    options: {
      indexAxis: "y",
      scales: { x: { stacked: true, ...moneyAxis }, y: { stacked: true } },
      plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${usd(c.dataset.micros[c.dataIndex])}` } } },
    },
  });
  const line = (label, key, micros) => el("tr", { "data-key": key }, el("th", {}, label), numberCell(micros, usd(micros)));
  table("savings-table", ["", "USD"], [
    line("All-large baseline", "baseline", t.baseline_micros),
    line("Spend", "cost", t.cost_micros),
    line("Cache savings", "cache_savings", t.cache_savings_micros),
    line("Routing savings", "routing_savings", t.routing_savings_micros),
    line("Cheaper model chosen", "other_savings", other),
    line("Total saved", "savings", t.savings_micros),
  ]);
}

function renderCache(t) {
  chart("cache-chart", {
    type: "doughnut",
    data: {
      labels: ["Cache hits", "Answered by a pool"],
      datasets: [{ data: [t.cache_hits, t.requests - t.cache_hits], backgroundColor: ["#16a34a", "#cbd5e1"] }],
    },
  });
}

function renderRouter(split) {
  const routed = split.routed > 0;
  $("router-note").textContent = routed
    ? "Requests a routing policy decided (cache hits excluded)."
    : "No routed requests in this range: requests per pool (cache hits excluded).";
  const rows = split.rows;
  chart("router-chart", {
    type: "doughnut",
    data: {
      labels: rows.map((r) => (r.large ? `${r.pool} (baseline pool)` : r.pool)),
      datasets: [{
        data: rows.map((r) => (routed ? r.routed : r.requests)),
        backgroundColor: rows.map((r, i) => (r.large ? "#ea580c" : PALETTE[i % PALETTE.length])),
      }],
    },
  });
}

function renderTopKeys(rows) {
  const top = [...rows].sort((a, b) => b.cost_micros - a.cost_micros || b.requests - a.requests).slice(0, 10);
  table("top-keys", ["Key", "Team", "Requests", "Spend", "Saved"], top.map((r) => el("tr", { "data-key": r.key_id },
    el("td", { title: r.key_prefix ?? "" }, r.key_name || r.key_prefix || r.key_id),
    el("td", {}, r.team ?? r.team_id),
    numberCell(r.requests, count(r.requests)),
    numberCell(r.cost_micros, usd(r.cost_micros)),
    numberCell(r.savings_micros, usd(r.savings_micros)))));
}

function renderTopModels(rows) {
  const top = [...rows].sort((a, b) => b.cost_micros - a.cost_micros || b.requests - a.requests).slice(0, 10);
  table("top-models", ["Model", "Requests", "Tokens", "Cache hits", "Spend"], top.map((r) => {
    const tokens = r.prompt_tokens + r.completion_tokens;
    return el("tr", { "data-key": r.model },
      el("td", {}, r.model),
      numberCell(r.requests, count(r.requests)),
      numberCell(tokens, count(tokens)),
      numberCell(r.cache_hits, count(r.cache_hits)),
      numberCell(r.cost_micros, usd(r.cost_micros)));
  }));
}

function renderPools(pools) {
  $("pools-card").hidden = pools === null;
  if (pools === null) return;
  const fixed = (x, digits) => (x === null ? "–" : x.toFixed(digits));
  table("pools", ["Pool", "Model", "Replicas up", "In flight", "Waiting", "KV cache (max)",
    "Spec. acceptance", "Tokens per step"], pools.data.map((p) => {
    const sum = (f) => p.replicas.reduce((acc, r) => acc + r[f], 0);
    const kv = Math.max(0, ...p.replicas.map((r) => r.kv_cache_usage));
    const s = p.speculation;
    return el("tr", { "data-key": p.name, class: p.healthy ? "ok" : "down" },
      el("td", {}, el("span", { class: "dot", title: p.healthy ? "healthy" : "down" }), p.name),
      el("td", {}, p.model),
      show(el("td", { title: p.replicas.map((r) => `${r.url}: ${r.up ? "up" : r.last_error ?? "down"}`).join("\n") }),
        p.replicas_up, `${p.replicas_up}/${p.replicas.length}`),
      numberCell(sum("in_flight"), count(sum("in_flight"))),
      numberCell(sum("waiting"), count(sum("waiting"))),
      numberCell(kv, pct(kv)),
      numberCell(s.acceptance_rate, pct(s.acceptance_rate)),
      numberCell(s.mean_accepted_length, fixed(s.mean_accepted_length, 2)));
  }));
}

async function loadBudget() {
  const summary = $("budget-summary");
  const team = selectedTeam();
  if (session.role === "master" && !team) {
    summary.textContent = "Pick a team to see its budget.";
    clearChart("budget-chart");
    return;
  }
  let budget;
  try {
    budget = session.role === "master"
      ? await api(`admin/teams/${encodeURIComponent(team)}/budget`)
      : await api("v1/insights/budget");
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    summary.textContent = "This team has no budget.";
    clearChart("budget-chart");
    return;
  }
  if (budget.limit_micros === null) {
    summary.textContent = `This budget limits tokens (${count(budget.limit_tokens)} per ${budget.period}), not spend.`;
    clearChart("budget-chart");
    return;
  }
  const cur = budget.current;
  const start = cur.period_start.slice(0, 10);
  const end = cur.period_end ? cur.period_end.slice(0, 10) : isoDay(1);
  const daily = await report({ from: start, to: end, group_by: "day" });
  const today = isoDay(0);
  // A budget without an end ("total") starts at its first day with spend.
  const first = cur.period_end ? start : (daily.rows[0]?.day ?? today);
  const days = daysBetween(first, end);
  const byDay = new Map(daily.rows.map((r) => [r.day, r.cost_micros]));
  const limit = budget.limit_micros;
  let spent = 0;
  const remaining = days.map((d) => {
    spent += byDay.get(d) ?? 0;
    return d <= today ? limit - spent : null;
  });
  const datasets = [{
    label: "Remaining", micros: remaining, data: remaining.map((m) => (m === null ? null : m / MICROS)),
    borderColor: "#2563eb", backgroundColor: "#2563eb", tension: 0,
  }];
  if (cur.period_end) {
    const pace = days.map((_, i) => Math.round(limit * (1 - (i + 1) / days.length)));
    datasets.push({
      label: "Even pace", micros: pace, data: pace.map((m) => m / MICROS),
      borderColor: "#94a3b8", borderDash: [6, 4], pointRadius: 0,
    });
  }
  chart("budget-chart", {
    type: "line",
    data: { labels: days, datasets },
    options: {
      scales: { y: { min: Math.min(0, ...remaining.filter((m) => m !== null).map((m) => m / MICROS)), ...moneyAxis } },
      plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${usd(c.dataset.micros[c.dataIndex])}` } } },
    },
  });
  const spentInPeriod = daily.totals.cost_micros;
  summary.replaceChildren(
    "Spent ", show(el("strong", { id: "budget-spent" }), spentInPeriod, usd(spentInPeriod)),
    " of ", show(el("strong", { id: "budget-limit" }), limit, usd(limit)),
    ` (${budget.period === "total" ? "in total" : `this ${budget.period}`}, ledger); left `,
    show(el("strong", { id: "budget-left" }), limit - spentInPeriod, usd(limit - spentInPeriod)),
    ". Live counters: ", show(el("span", { id: "budget-used-pct" }), cur.used_pct, cur.used_pct === null ? "–" : `${cur.used_pct}%`),
    " used, ", show(el("span", { id: "budget-held" }), cur.held_micros, usd(cur.held_micros)), " held by requests in flight.");
}

// -- sign in / out --------------------------------------------------------------------------

async function signIn(key) {
  session.key = key;
  const me = await api("v1/insights/whoami"); // a 401 here signs out with the reason
  session.role = me.role;
  session.teams = [];
  if (me.role === "master") {
    const [teams, tenants] = await Promise.all([api("admin/teams"), api("admin/tenants")]);
    const tenantName = new Map(tenants.data.map((t) => [t.id, t.name]));
    session.teams = teams.data
      .map((t) => ({ id: t.id, label: `${tenantName.get(t.tenant_id) ?? t.tenant_id} / ${t.name}` }))
      .sort((a, b) => a.label.localeCompare(b.label));
  }
  sessionStorage.setItem(KEY, key);
  $("who").textContent = me.role === "master" ? "Master key · all teams" : `Team key · ${me.team}`;
  $("team").replaceChildren(el("option", { value: "" }, "All teams"),
    ...session.teams.map((t) => el("option", { value: t.id }, t.label)));
  $("team").closest("label").hidden = session.role !== "master";
  $("login").hidden = true;
  $("controls").hidden = false;
  $("board").hidden = false;
  await load();
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY);
  Object.assign(session, { key: null, role: null, teams: [] });
  for (const canvas of document.querySelectorAll("canvas")) window.Chart.getChart(canvas)?.destroy();
  $("board").hidden = true;
  $("controls").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("key").value = "";
  document.body.dataset.state = "signed-out";
}

// Run an action; a rejected key signs out, anything else is shown above the board.
async function guarded(action) {
  try {
    await action();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      signOut(`The key was not accepted: ${err.message}`);
      return;
    }
    const banner = $("board").hidden ? $("login-error") : $("error");
    banner.textContent = `Could not load the dashboard: ${err.message}`;
    banner.hidden = false;
    document.body.dataset.state = "error";
  }
}

function init() {
  const C = window.Chart;
  C.defaults.animation = false;
  C.defaults.maintainAspectRatio = false;
  C.defaults.font.family = getComputedStyle(document.body).fontFamily;
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(() => signIn($("key").value.trim()));
  });
  $("logout").addEventListener("click", () => signOut());
  $("refresh").addEventListener("click", () => guarded(load));
  $("team").addEventListener("change", () => guarded(load));
  $("days").addEventListener("change", () => guarded(load));
  const saved = sessionStorage.getItem(KEY);
  if (saved) guarded(() => signIn(saved));
  else signOut();
}

init();
