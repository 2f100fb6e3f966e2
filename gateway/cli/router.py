"""`frugate router ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="router commands.", no_args_is_help=True)
