"""`frugate router ...` commands: train, score and eval the small-vs-large router.

Heavy imports (the embedder's torch, sklearn) happen inside the commands, so `frugate --help`
stays fast.
"""

from __future__ import annotations

import csv
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import numpy as np

    from embedder.base import Embedder
    from router.evaluate import EvalReport

app = typer.Typer(
    help="Train, score and evaluate the small-vs-large router.",
    no_args_is_help=True,
)

DEFAULT_CACHE = Path(".cache/router")

RouterOpt = Annotated[
    Path | None,
    typer.Option("--router", help="Router artifact (.npz + .json); default: the shipped one."),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Where prompt embeddings are cached ('' disables)."),
]


def _cache(path: Path | None) -> Path | None:
    if path is None:
        return DEFAULT_CACHE
    return None if str(path) in {"", "."} else path


def _make_embedder() -> Embedder:
    from embedder import MiniLMEmbedder

    return MiniLMEmbedder()


@contextmanager
def _progress(label: str, total: int | None) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr; yields `advance(n)` (or `advance(msg)` for steps)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}" if total else ""),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)

        def advance(x: int | str = 1) -> None:
            if isinstance(x, str):
                bar.update(task, description=f"{label}: {x}")
                if not console.is_terminal:  # logs get one line per step instead of a bar
                    console.print(f"{label}: {x}", highlight=False)
            else:
                bar.advance(task, x)

        yield advance


def _load_router(path: Path | None) -> Any:
    import router as rt

    return rt.Router.load(path) if path is not None else rt.load_default()


def _embed(prompts: list[str], cache_dir: Path | None, batch_size: int) -> np.ndarray:
    from router.embeddings import embed_prompts

    with _progress("embedding", len(prompts)) as advance:
        return embed_prompts(
            prompts, _make_embedder, cache_dir=cache_dir, batch_size=batch_size, progress=advance
        )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Example: frugate router train --data mmlu.csv routerbench_train.csv "
    "--out router/artifacts/default.npz",
)
def train(
    ctx: typer.Context,
    data: Annotated[
        list[Path],
        typer.Option(
            "--data", help="Outcome CSVs (prompt, small_quality, large_quality[, source])."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Artifact path (.npz; a .json is written beside).")
    ],
    cache_dir: CacheOpt = None,
    exclude_source: Annotated[
        list[str] | None,
        typer.Option(help="Leave rows of this `source` out of training (repeatable)."),
    ] = None,
) -> None:
    """Cross-validate the candidate routers, pick the ensemble, fit, calibrate and save."""
    from router.build import build_router

    paths = list(data) + [Path(a) for a in ctx.args]  # `--data A.csv B.csv` form
    for p in paths:
        if not p.is_file():
            raise typer.BadParameter(f"no such file: {p}", param_hint="--data")
    command = "frugate router train --data " + " ".join(shlex.quote(str(p)) for p in paths)
    command += f" --out {shlex.quote(str(out))}"
    command += "".join(f" --exclude-source {shlex.quote(s)}" for s in exclude_source or [])
    with _progress("training", None) as step:
        result, meta = build_router(
            paths,
            out,
            _make_embedder,
            cache_dir=_cache(cache_dir),
            step=step,
            command=command,
            exclude_sources=exclude_source or [],
        )
    names = [d["file"] for d in meta["data"]]
    typer.echo("cross-validated APGR on the train part (out-of-fold):")
    typer.echo(f"  {'candidate':<40}" + "".join(f"{n:>24}" for n in names))
    for name, vals in result.cv.items():
        typer.echo(f"  {name:<40}" + "".join(f"{v:>24.4f}" for v in vals))
    typer.echo(f"chosen head: {result.head.name}")
    typer.echo(f"saved {Path(out).with_suffix('.npz')} and {Path(out).with_suffix('.json')}")


@app.command(epilog="Example: frugate router score --in held_out.csv --out scores.csv")
def score(
    input_path: Annotated[Path, typer.Option("--in", help="CSV with a `prompt` column.")],
    output_path: Annotated[Path, typer.Option("--out", help="Writes `prompt,score`.")],
    router_path: RouterOpt = None,
    cache_dir: CacheOpt = None,
    batch_size: Annotated[int, typer.Option(help="Embedding batch size.")] = 128,
) -> None:
    """Score every prompt (higher = more need for the large model) with the router."""
    from router.data import read_prompts

    prompts = read_prompts(input_path)
    rt = _load_router(router_path)
    embeddings = _embed(prompts, _cache(cache_dir), batch_size)
    scores = rt.score_many(prompts, embeddings)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "score"])
        for p, s in zip(prompts, scores, strict=True):
            w.writerow([p, f"{s:.8g}"])
    typer.echo(f"wrote {len(prompts)} scores to {output_path}", err=True)


class SplitChoice(StrEnum):
    auto = "auto"
    all = "all"
    test = "test"
    calib = "calib"
    train = "train"


def _read_policies(path: Path | None) -> dict[str, Any]:
    from router.policy import DEFAULT_POLICIES

    if path is None:
        return dict(DEFAULT_POLICIES)
    import yaml

    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if "router" in doc and isinstance(doc["router"], dict):
        doc = doc["router"]
    specs = doc.get("policies", doc)
    if not isinstance(specs, dict):
        raise typer.BadParameter(
            "expected a mapping of policy name -> settings", param_hint="--policies"
        )
    return specs


def _print_report(rep: EvalReport, by_source: bool) -> None:
    pct = [f"CPT({round(t * 100)}%)" for t in (0.5, 0.8, 0.95)]
    typer.echo(
        f"rows: {rep.rows}   small-only quality: {rep.small_only:.4f}   "
        f"large-only quality: {rep.large_only:.4f}"
    )
    typer.echo(f"{'':<10}{'APGR':>8}" + "".join(f"{c:>10}" for c in pct))
    for c in rep.curves:
        typer.echo(f"{c.name:<10}{c.apgr:>8.4f}" + "".join(f"{v:>10.3f}" for v in c.cpt))
    if rep.policies:
        typer.echo(
            f"\n{'policy':<22}{'target':<20}{'threshold':>10}{'large share':>13}"
            f"{'quality':>10}{'PGR':>8}"
        )
        for p in rep.policies:
            typer.echo(
                f"{p.name:<22}{p.target:<20}{p.threshold:>10.4f}{p.large_share:>13.3f}"
                f"{p.quality:>10.4f}{p.pgr:>8.3f}"
            )
    if by_source and rep.by_source:
        typer.echo(f"\n{'source':<44}{'APGR':>8}" + "".join(f"{c:>10}" for c in pct))
        for c in rep.by_source.values():
            typer.echo(f"{c.name:<44}{c.apgr:>8.4f}" + "".join(f"{v:>10.3f}" for v in c.cpt))


@app.command(
    name="eval",
    epilog="Example: frugate router eval --data /work/shared/data/routing/mmlu.csv",
)
def eval_(
    data: Annotated[Path, typer.Option("--data", help="Outcome CSV to evaluate on.")],
    router_path: RouterOpt = None,
    split: Annotated[
        SplitChoice,
        typer.Option(
            help="Rows to use. auto: every row the router was neither trained nor calibrated "
            "on (for the shared tables that is exactly the held-out test part)."
        ),
    ] = SplitChoice.auto,
    policies: Annotated[
        Path | None,
        typer.Option(
            help="YAML of policies (name -> settings); default: auto, auto-cheap, auto-quality."
        ),
    ] = None,
    by_source: Annotated[bool, typer.Option(help="Also print APGR per `source`.")] = False,
    cache_dir: CacheOpt = None,
    batch_size: Annotated[int, typer.Option(help="Embedding batch size.")] = 128,
) -> None:
    """Small-only, large-only, APGR, CPT(50/80/95%) and each policy, next to random and oracle."""
    from router.data import read_outcomes
    from router.evaluate import evaluate_scores
    from router.policy import policies_from_config

    rt = _load_router(router_path)
    table = read_outcomes(data)
    if split is SplitChoice.auto:
        seen = rt.was_seen(table.prompts)
        table = table.take([i for i in range(len(table)) if not seen[i]])
        typer.echo(
            f"split auto: left out {int(seen.sum())} rows the router was trained or calibrated on",
            err=True,
        )
    else:
        table = table.split(split.value)
    if len(table) == 0:
        typer.echo("no rows to evaluate", err=True)
        raise typer.Exit(1)
    embeddings = _embed(table.prompts, _cache(cache_dir), batch_size)
    scores = rt.score_many(table.prompts, embeddings)
    pols = policies_from_config(_read_policies(policies), rt.calibration)
    _print_report(evaluate_scores(table, scores, pols), by_source)


@app.command(epilog="Example: frugate router sanity --router router/artifacts/default.npz")
def sanity(
    router_path: RouterOpt = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Score hand-written prompts outside the training benchmarks (easy vs hard) and print
    the ordering: a router that generalises scores the hard ones higher."""
    from router.sanity import SANITY_LISTS, order_accuracy

    rt = _load_router(router_path)
    for name, (easy, hard) in SANITY_LISTS.items():
        prompts = [*easy, *hard]
        scores = rt.score_many(prompts, _embed(prompts, _cache(cache_dir), 64))
        typer.echo(f"{name}:")
        ranked = sorted(zip(scores, prompts, strict=True), key=lambda sp: -sp[0])
        for s, p in ranked:
            kind = "hard" if p in hard else "easy"
            typer.echo(f"  {s:+.3f}  {kind:<4}  {p[:80]!r}")
        acc = order_accuracy(scores[: len(easy)], scores[len(easy) :])
        typer.echo(f"  pairs ordered hard > easy: {acc:.2f} (0.5 = chance)\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
