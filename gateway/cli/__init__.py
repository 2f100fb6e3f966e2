"""The `frugate` command line. Each noun group lives in its own module."""

from __future__ import annotations

import os
import sys

import typer

from gateway.cli import budgets, cache, keys, rag, report, router, serve, sim, worker

app = typer.Typer(
    name="frugate",
    help="frugate: an OpenAI-compatible LLM gateway for self-hosted vLLM pools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(serve.serve)
app.command("check-config")(serve.check_config)
app.command("sim-worker")(sim.sim_worker)
app.add_typer(router.app, name="router")
app.add_typer(cache.app, name="cache")
app.add_typer(rag.app, name="rag")
app.add_typer(worker.app, name="worker")
app.add_typer(keys.app, name="keys")
app.add_typer(budgets.app, name="budgets")
app.command("report")(report.report)


def main() -> None:
    try:
        app()
    except (ValueError, OSError) as exc:
        # Bad input files (missing, unreadable, wrong columns, broken JSON): say what is
        # wrong, not where in our code it was noticed. FRUGATE_DEBUG=1 shows the traceback.
        if os.environ.get("FRUGATE_DEBUG"):
            raise
        print(f"error: {exc} (FRUGATE_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(2)
