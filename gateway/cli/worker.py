"""`frugate worker ...`: real vLLM pools from `configs/vllm/*.yaml`.

Register with `app.add_typer(worker.app, name="worker")`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from workers.vllm import (
    LaunchError,
    PoolSpec,
    PoolSpecError,
    compose_service,
    container,
    find_pool,
    k8s_objects,
    launch,
    load_pools,
    replica_env,
    replica_name,
    replica_port,
    shell_command,
)
from workers.vllm import argv as render_argv

app = typer.Typer(
    help="vLLM worker pools: list, render the exact launch command or container spec, launch.",
    no_args_is_help=True,
)


class Format(StrEnum):
    shell = "shell"
    json = "json"
    container = "container"
    k8s = "k8s"
    compose = "compose"


PoolArg = Annotated[str, typer.Argument(help="Pool name (configs/vllm/NAME.yaml) or a YAML path.")]
PoolDirOpt = Annotated[
    Path | None, typer.Option("--pool-dir", help="Directory of pool files (default configs/vllm).")]
ReplicaOpt = Annotated[
    int | None, typer.Option("--replica", "-r", help="One replica (default: all).", min=0)]


def _pool(name: str, pool_dir: Path | None) -> PoolSpec:
    try:
        return find_pool(name, pool_dir)
    except PoolSpecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _selected(spec: PoolSpec, replica: int | None) -> list[int]:
    if replica is None:
        return list(range(spec.replicas))
    try:
        spec.check_replica(replica)
    except PoolSpecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    return [replica]


def _dump(data: Any) -> str:
    return str(yaml.safe_dump(data, sort_keys=False, width=1000))


@app.command("list")
def list_pools(pool_dir: PoolDirOpt = None) -> None:
    """List the pools: model, GPUs per replica, replicas, speculation.

    Example: frugate worker list
    """
    try:
        pools = load_pools(pool_dir)
    except PoolSpecError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for spec in pools:
        spec_desc = "none"
        if spec.speculative is not None:
            n = sum(spec.speculates(i) for i in range(spec.replicas))
            spec_desc = (f"{spec.speculative.method} k={spec.speculative.num_speculative_tokens}"
                         f" on {n}/{spec.replicas}")
        gpus = f"{spec.tensor_parallel_size} GPU" if spec.device == "gpu" else "cpu"
        typer.echo(f"{spec.name:<10} {spec.served_name:<40} {gpus:<6} x{spec.replicas:<3} "
                   f"max_len={spec.max_model_len:<6} spec={spec_desc}")


@app.command()
def render(
    pool: PoolArg,
    replica: ReplicaOpt = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output form.")] = Format.shell,
    pool_dir: PoolDirOpt = None,
) -> None:
    """Print the exact vLLM command line (or container spec) of a pool's replicas.

    Examples:
      frugate worker render small                 # one shell line per replica
      frugate worker render large -r 0 -f json    # argv, env and port of replica 0
      frugate worker render small -f k8s          # Deployment + Service per replica
      frugate worker render large -f compose      # docker-compose services
    """
    spec = _pool(pool, pool_dir)
    chosen = _selected(spec, replica)
    if fmt is Format.shell:
        for i in chosen:
            typer.echo(shell_command(spec, i))
    elif fmt is Format.json:
        rows = [{"replica": i, "name": replica_name(spec, i), "port": replica_port(spec, i),
                 "speculative": spec.speculates(i), "env": replica_env(spec, i),
                 "argv": render_argv(spec, i)} for i in chosen]
        typer.echo(json.dumps(rows, indent=2))
    elif fmt is Format.container:
        typer.echo(_dump([container(spec, i) for i in chosen]), nl=False)
    elif fmt is Format.k8s:
        docs = yaml.safe_dump_all(k8s_objects(spec, chosen), sort_keys=False, width=1000)
        typer.echo(str(docs), nl=False)
    else:
        services = {replica_name(spec, i): compose_service(spec, i) for i in chosen}
        typer.echo(_dump({"services": services}), nl=False)


@app.command("launch")
def launch_cmd(
    pool: PoolArg,
    replica: Annotated[int, typer.Option("--replica", "-r", help="Which replica.", min=0)] = 0,
    pool_dir: PoolDirOpt = None,
) -> None:
    """Run one replica of a pool on this host (needs its GPUs; exits 2 with the reason if not).

    Replica i uses GPUs [i*tp, (i+1)*tp) and port port_base+i.

    Example: frugate worker launch small --replica 1
    """
    spec = _pool(pool, pool_dir)
    _selected(spec, replica)
    typer.echo(f"launching {replica_name(spec, replica)}: {shell_command(spec, replica)}",
               err=True)
    try:
        launch(spec, replica)
    except LaunchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
