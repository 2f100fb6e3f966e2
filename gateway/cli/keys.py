"""`frugate keys ...`: virtual keys through a running gateway's admin API.

Also holds what the operator commands share (budgets, report): the `--url`/`--master-key`
options, the HTTP call with readable errors, and name-or-id lookups of teams and tenants.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Create, list, rotate and revoke virtual keys (admin API).",
                  no_args_is_help=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="FRUGATE_URL",
                                     help="The gateway's base URL.")]
MasterOpt = Annotated[str | None, typer.Option(
    "--master-key", envvar="FRUGATE_MASTER_KEY", show_default=False,
    help="The admin master key (default: $FRUGATE_MASTER_KEY).")]
DEFAULT_URL = "http://127.0.0.1:8080"
_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False).print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def call(url: str, master_key: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One admin API call; errors become a one-line message and exit status 1."""
    if not master_key:
        raise fail("no master key: pass --master-key or set FRUGATE_MASTER_KEY")
    try:
        resp = httpx.request(method, url.rstrip("/") + path, timeout=30,
                             headers={"authorization": f"Bearer {master_key}"}, **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the gateway at {url}: {exc}") from None
    if resp.status_code >= 400:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text[:200]
        raise fail(f"{message} (HTTP {resp.status_code})")
    if resp.headers.get("content-type", "").startswith("text/csv"):
        return resp.text
    return resp.json()


def usd_text(v: float | None) -> str:
    """Dollars with the precision the amount needs (token costs are often fractions of a cent)."""
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"${v:,.2f}"
    return f"${v:,.4f}" if abs(v) >= 1 or v == 0 else f"${v:.6f}"


def duration_s(text: str) -> int:
    """'3600', '90m', '12h', '30d' or '2w' in seconds."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 3600, 90m, 12h or 30d")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def resolve(url: str, master_key: str | None, kind: str, ref: str,
            tenant_id: str | None = None) -> dict[str, Any]:
    """A tenant or team by id, else by name (a team's name within `tenant_id` if given)."""
    plural = {"tenant": "tenants", "team": "teams"}[kind]
    if ref.startswith(("ten_", "team_")):
        return call(url, master_key, "GET", f"/admin/{plural}/{ref}")  # type: ignore[no-any-return]
    params = {"name": ref} | ({"tenant_id": tenant_id} if tenant_id else {})
    found = call(url, master_key, "GET", f"/admin/{plural}", params=params)["data"]
    if not found:
        raise fail(f"no {kind} named {ref!r}")
    if len(found) > 1:
        raise fail(f"more than one {kind} is named {ref!r}: use its id or --tenant")
    return found[0]  # type: ignore[no-any-return]


def team_id(url: str, master_key: str | None, team: str, tenant: str | None) -> str:
    tenant_id = resolve(url, master_key, "tenant", tenant)["id"] if tenant else None
    return str(resolve(url, master_key, "team", team, tenant_id)["id"])


def _when(ts: str | None) -> str:
    return ts[:19].replace("T", " ") if ts else "-"


def _key_table(keys: list[dict[str, Any]], teams: dict[str, str]) -> Table:
    t = Table(show_lines=False)
    for col in ("id", "name", "prefix", "team", "status", "models", "rpm/tpm", "created",
                "expires"):
        t.add_column(col, overflow="fold")
    for k in keys:
        colour = {"active": "green", "expired": "yellow", "revoked": "red"}[k["status"]]
        rate = f"{k['rpm'] or '-'}/{k['tpm'] or '-'}"
        t.add_row(k["id"], k["name"] or "-", k["prefix"], teams.get(k["team_id"], k["team_id"]),
                  f"[{colour}]{k['status']}[/{colour}]",
                  ", ".join(k["allowed_models"]) if k["allowed_models"] else "all", rate,
                  _when(k["created_at"]), _when(k["expires_at"]))
    return t


def _print_new(key: dict[str, Any], title: str) -> None:
    out = console()
    out.print(f"[bold]{title}[/bold] {key['id']} (team {key['team_id']})")
    out.print(f"\n    {key['key']}\n")
    out.print("Store it now: frugate keeps only its hash and cannot show it again.")


@app.command("create")
def create(
    team: Annotated[str, typer.Option(help="Team id or name.")],
    tenant: Annotated[str | None, typer.Option(help="Tenant id or name (to find the team).")
                      ] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    models: Annotated[str | None, typer.Option(
        help="Comma-separated models/aliases the key may use (default: all).")] = None,
    expires_in: Annotated[str | None, typer.Option(help="e.g. 30d, 12h (default: never).")
                          ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
) -> None:
    """Create a key and print it (the only time it is shown).

    Example: frugate keys create --team ml --tenant acme --models gpt-4o-mini --expires-in 90d
    """
    body: dict[str, Any] = {"team_id": team_id(url, master_key, team, tenant), "name": name,
                            "rpm": rpm, "tpm": tpm}
    if models:
        body["allowed_models"] = [m.strip() for m in models.split(",") if m.strip()]
    if expires_in:
        body["expires_in_s"] = duration_s(expires_in)
    _print_new(call(url, master_key, "POST", "/admin/keys", json=body), "Created key")


@app.command("list")
def list_keys(
    team: Annotated[str | None, typer.Option(help="Only this team (id or name).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (id or name).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
) -> None:
    """List keys (prefixes only; a key's plaintext is never shown again).

    Example: frugate keys list --tenant acme --all
    """
    params: dict[str, Any] = {"include_revoked": all_, "limit": 1000}
    if team:
        params["team_id"] = team_id(url, master_key, team, tenant)
    elif tenant:
        params["tenant_id"] = resolve(url, master_key, "tenant", tenant)["id"]
    keys = call(url, master_key, "GET", "/admin/keys", params=params)["data"]
    teams = {t["id"]: t["name"] for t in call(url, master_key, "GET", "/admin/teams")["data"]}
    out = console()
    out.print(_key_table(keys, teams))
    out.print(f"{len(keys)} key(s)")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
) -> None:
    """Revoke a key at once, on every replica.

    Example: frugate keys revoke key_0123456789abcdef
    """
    key = call(url, master_key, "POST", f"/admin/keys/{key_id}/revoke")
    console().print(f"Revoked {key['id']} ({key['prefix']}).")


@app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    grace: Annotated[str, typer.Option(help="How long the old key keeps working.")] = "24h",
    url: UrlOpt = DEFAULT_URL,
    master_key: MasterOpt = None,
) -> None:
    """Issue a replacement key; the old one keeps working for the grace period.

    Example: frugate keys rotate key_0123456789abcdef --grace 1h
    """
    new = call(url, master_key, "POST", f"/admin/keys/{key_id}/rotate",
               json={"grace_s": duration_s(grace)})
    _print_new(new, "Rotated: new key")
    console().print(f"The old key {key_id} stops working at {_when(new['old_key_expires_at'])} "
                    "UTC.")
