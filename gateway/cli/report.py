"""`frugate report`: the usage report of the admin API as a readable table (or CSV)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from gateway.cli.keys import DEFAULT_URL, MasterOpt, UrlOpt, call, console, usd_text

_LABELS = {"tenant": ("tenant", "tenant_id"), "team": ("team", "team_id"),
           "key": ("key_prefix", "key_id"), "model": ("model", "model"), "day": ("day", "day")}


def report_table(rep: dict[str, Any]) -> Table:
    group_by = rep["group_by"]
    t = Table(title=f"Usage {rep['from'][:19]} .. {rep['to'][:19]} UTC",
              caption="savings = baseline (all on the baseline pool) - cost", show_footer=True)
    for i, dim in enumerate(group_by):
        t.add_column(dim, footer="total" if i == 0 else "")
    tot = rep["totals"]
    numbers = [("requests", "requests", f"{tot['requests']:,}"),
               ("errors", "errors", f"{tot['errors']:,}"),
               ("cache hits", "cache_hits", f"{tot['cache_hits']:,}"),
               ("prompt tok", "prompt_tokens", f"{tot['prompt_tokens']:,}"),
               ("compl. tok", "completion_tokens", f"{tot['completion_tokens']:,}"),
               ("cost", "cost_usd", usd_text(tot["cost_usd"])),
               ("baseline", "baseline_usd", usd_text(tot["baseline_usd"])),
               ("savings", "savings_usd", usd_text(tot["savings_usd"])),
               ("via cache", "cache_savings_usd", usd_text(tot["cache_savings_usd"])),
               ("via routing", "routing_savings_usd", usd_text(tot["routing_savings_usd"]))]
    if not group_by:
        t.add_column("", footer="total")
    for title, _, footer in numbers:
        t.add_column(title, justify="right", footer=footer)
    for r in rep["rows"]:
        cells = []
        for dim in group_by:
            label, ident = _LABELS[dim]
            cells.append(str(r.get(label) or r.get(ident) or "-"))
        if not group_by:
            cells.append("")
        for _, field, _ in numbers:
            v = r[field]
            cells.append(usd_text(v) if field.endswith("_usd") else f"{v:,}")
        t.add_row(*cells)
    return t


def report(
    team: Annotated[str | None, typer.Option(help="Team id or name.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant id or name.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Key id.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    from_: Annotated[str | None, typer.Option(
        "--from", help="ISO date or datetime, UTC (default: the 1st of this month).")] = None,
    to: Annotated[str | None, typer.Option(
        help="Exclusive ISO date or datetime (default: tomorrow).")] = None,
    group_by: Annotated[str, typer.Option(
        help="Comma-separated: tenant, team, key, model, day.")] = "team,model",
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
) -> None:
    """Requests, tokens, cost, baseline cost and savings (cache, routing) from the ledger.

    Example: frugate report --team ml --from 2026-11-01 --to 2026-12-01 --group-by model,day
    """
    params = {k: v for k, v in (("team", team), ("tenant", tenant), ("key", key),
                                ("model", model), ("from", from_), ("to", to),
                                ("group_by", group_by)) if v is not None}
    if csv:
        params["format"] = "csv"
        typer.echo(call(url, master_key, "GET", "/admin/reports/usage", params=params), nl=False)
        return
    console().print(report_table(call(url, master_key, "GET", "/admin/reports/usage",
                                      params=params)))
