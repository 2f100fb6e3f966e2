"""`frugate serve` and `frugate check-config`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from gateway.config import ConfigError, Settings, config_path, load_settings


def _load(config: Path | None) -> Settings:
    path = config_path(config)
    try:
        return load_settings(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def check_config(
    config: Annotated[Path, typer.Argument(help="The YAML file to validate.")],
) -> None:
    """Validate a config file and print a summary.

    Example: frugate check-config configs/production.example.yaml
    """
    s = _load(config)
    typer.echo(f"{config}: ok")
    for p in s.pools:
        aliases = f" (aliases: {', '.join(p.aliases)})" if p.aliases else ""
        typer.echo(f"  pool {p.name}: model {p.model}, {len(p.replicas)} replica(s), "
                   f"context {p.max_context}{aliases}")
    for pol in s.routing.policies:
        knob = f"large_share={pol.large_share}" if pol.large_share is not None \
            else f"quality={pol.quality}"
        if pol.track_share:
            knob += f" (tracked over {pol.track_window} scores)"
        if pol.cascade_min_logprob is not None:
            knob += f", cascade below mean logprob {pol.cascade_min_logprob}"
        typer.echo(f"  routing policy {pol.name}: {pol.small} | {pol.large}, {knob}")
    typer.echo(f"  state: {'redis ' + s.redis_url if s.redis_url else 'in-process'}; "
               f"database: {s.sqlalchemy_url.split('@')[-1]}")


def serve(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Config file (default: $FRUGATE_CONFIG or configs/frugate.yaml).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (overrides the config).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (overrides the config).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Gateway processes (needs redis_url if > 1).")] = None,
) -> None:
    """Run the gateway (and the simulated vLLM workers the config asks for).

    Example: frugate serve --config configs/frugate.yaml --port 8080
    """
    import uvicorn

    from gateway.logs import setup_logging

    path = config_path(config)
    s = _load(path)
    host, port, workers = host or s.host, port or s.port, workers or s.workers
    if workers > 1 and not s.redis_url:
        typer.echo("error: --workers > 1 needs redis_url in the config", err=True)
        raise typer.Exit(2)
    setup_logging(s.logging.level, s.logging.json_format)
    sims = _start_sim_workers(s)
    try:
        if s.simulated_workers:
            _wait_healthy([f"http://127.0.0.1:{w.port}" for w in s.simulated_workers])
        demo_key = asyncio.run(_demo_key(s)) if s.demo_key else None
        os.environ["FRUGATE_CONFIG"] = str(path)
        if demo_key:
            _print_snippet(host, port, demo_key, s)
        # The outer bound on open requests; the gate inside handles fairness and Retry-After.
        limit = 2 * (s.limits.max_in_flight + s.limits.max_queue)
        uvicorn.run("gateway.asgi:create", factory=True, host=host, port=port, workers=workers,
                    loop="uvloop", http="httptools", log_level="warning", access_log=False,
                    timeout_graceful_shutdown=30, lifespan="on", limit_concurrency=limit,
                    backlog=4096)
    finally:
        for proc in sims:
            proc.terminate()
        for proc in sims:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


def _start_sim_workers(s: Settings) -> list[subprocess.Popen[bytes]]:
    procs = []
    for w in s.simulated_workers:
        cmd = [sys.executable, "-m", "gateway.cli", "sim-worker", "--model", w.model,
               "--port", str(w.port), "--profile", w.profile, *w.args]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))
    return procs


def _wait_healthy(urls: list[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    pending = set(urls)
    while pending and time.monotonic() < deadline:
        for url in list(pending):
            try:
                if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                    pending.discard(url)
            except httpx.HTTPError:
                pass
        if pending:
            time.sleep(0.2)
    if pending:
        typer.echo(f"error: simulated workers did not start: {sorted(pending)}", err=True)
        raise typer.Exit(1)


async def _demo_key(s: Settings) -> str:
    from gateway.storage import connect, create_schema
    from gateway.tenancy.bootstrap import ensure_demo_key

    engine, sessions = connect(s.sqlalchemy_url)
    try:
        await create_schema(engine)
        return await ensure_demo_key(sessions, s.data_dir)
    finally:
        await engine.dispose()


def _print_snippet(host: str, port: int, key: str, s: Settings) -> None:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    model = s.routing.policies[0].name if s.routing.policies else s.pools[0].name
    typer.echo(f"""
frugate is starting on http://{shown}:{port}  (simulated vLLM workers: {len(s.simulated_workers)})
Paste this into Python (pip install openai):

    from openai import OpenAI
    client = OpenAI(base_url="http://{shown}:{port}/v1", api_key="{key}")
    r = client.chat.completions.create(model="{model}",
            messages=[{{"role": "user", "content": "Say hello"}}])
    print(r.choices[0].message.content, r.usage)

Admin API: http://{shown}:{port}/docs   (master key: $FRUGATE_MASTER_KEY or the config)
""", err=False)
