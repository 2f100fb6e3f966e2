"""`frugate budgets ...`: spend/token budgets of tenants, teams and keys (admin API)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from gateway.cli.keys import (
    DEFAULT_URL,
    MasterOpt,
    UrlOpt,
    call,
    console,
    fail,
    resolve,
    team_id,
    usd_text,
)

app = typer.Typer(help="Set and show budgets (admin API).", no_args_is_help=True)

TeamOpt = Annotated[str | None, typer.Option(help="A team (id or name).")]
TenantOpt = Annotated[str | None, typer.Option(
    help="A tenant (id or name); with --team, the tenant to find the team in.")]
KeyOpt = Annotated[str | None, typer.Option("--key", help="A key id (key_...).")]


def _scope(url: str, master_key: str | None, team: str | None, tenant: str | None,
           key: str | None) -> str:
    """The budget's API path prefix, e.g. /admin/teams/team_..."""
    if key:
        return f"/admin/keys/{key}"
    if team:
        return f"/admin/teams/{team_id(url, master_key, team, tenant)}"
    if tenant:
        return f"/admin/tenants/{resolve(url, master_key, 'tenant', tenant)['id']}"
    raise fail("say whose budget: --team, --tenant or --key")


def budget_table(b: dict[str, Any]) -> Table:
    cur = b["current"]
    t = Table(show_header=False, title=f"{b['scope']} {b['scope_id']}")
    t.add_column("field", style="bold")
    t.add_column("value")
    rows = [
        ("limit", usd_text(b["limit_usd"])),
        ("token limit", f"{b['limit_tokens']:,}" if b["limit_tokens"] is not None else "-"),
        ("period", f"{b['period']} (from {cur['period_start'][:10]}"
                   + (f" to {cur['period_end'][:10]})" if cur["period_end"] else ")")),
        ("spent", usd_text(cur["spent_usd"]) + (f"  ({cur['used_pct']}%)"
                                            if cur["used_pct"] is not None else "")),
        ("held (in flight)", usd_text(cur["held_usd"])),
        ("remaining", usd_text(cur["remaining_usd"])),
        ("tokens spent", f"{cur['spent_tokens']:,}"),
        ("soft limit", f"{b['soft_limit_pct']}%" if b["soft_limit_pct"] else "-"),
        ("webhook", b["webhook_url"] or "-"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t


@app.command("set")
def set_budget(
    limit_usd: Annotated[float | None, typer.Option(help="Spend limit in USD.")] = None,
    limit_tokens: Annotated[int | None, typer.Option(help="Token limit.")] = None,
    period: Annotated[str, typer.Option(help="day, week, month or total (UTC calendar).")
                      ] = "month",
    soft_limit_pct: Annotated[int | None, typer.Option(
        help="Send the webhook once per period when spend passes this % of the limit.")] = None,
    webhook_url: Annotated[str | None, typer.Option(help="Where the soft-limit event goes.")
                           ] = None,
    team: TeamOpt = None,
    tenant: TenantOpt = None,
    key: KeyOpt = None,
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
) -> None:
    """Set (replace) the budget of a team, tenant or key.

    Example: frugate budgets set --team ml --limit-usd 12.5 --soft-limit-pct 80 --webhook-url URL
    """
    if period not in ("day", "week", "month", "total"):
        raise typer.BadParameter("period must be day, week, month or total")
    path = _scope(url, master_key, team, tenant, key)
    body = {"limit_usd": limit_usd, "limit_tokens": limit_tokens, "period": period,
            "soft_limit_pct": soft_limit_pct, "webhook_url": webhook_url}
    console().print(budget_table(call(url, master_key, "PUT", path + "/budget", json=body)))


@app.command("show")
def show_budget(
    team: TeamOpt = None,
    tenant: TenantOpt = None,
    key: KeyOpt = None,
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
) -> None:
    """Show a budget and what has been spent in the current period.

    Example: frugate budgets show --team ml --tenant acme
    """
    path = _scope(url, master_key, team, tenant, key)
    console().print(budget_table(call(url, master_key, "GET", path + "/budget")))
