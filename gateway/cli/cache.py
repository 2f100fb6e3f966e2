"""`frugate cache ...` commands: evaluate and rebuild the semantic cache verifier.

Heavy imports (the embedder, faiss, sklearn) happen inside the commands so that
`frugate --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Semantic cache: evaluate the default policy, audit labels, rebuild the verifier.",
    no_args_is_help=True,
)

SHARED_PAIRS = Path("../shared/data/cache/qqp_pairs.jsonl")
DEFAULT_EMBED_CACHE = Path(".cache/cache")
Delta = Annotated[float, typer.Option(help="False-hit budget (δ) of the verifier.")]
EmbedCache = Annotated[Path | None, typer.Option(help="Directory to cache embeddings in.")]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from cache.data import read_jsonl

    return [row for _, row in read_jsonl(path, ("id", "text"))]


def _embedder(embed_cache: Path | None) -> Any:
    from cache.embcache import embed_cached
    from embedder import MiniLMEmbedder

    model = MiniLMEmbedder()
    return lambda texts: embed_cached(model, texts, embed_cache)


@app.command()
def simulate(
    entries: Annotated[Path, typer.Option(help='JSONL of {"id", "text"}: the cache entries.')],
    queries: Annotated[Path, typer.Option(help='JSONL of {"id", "text"}: the lookups.')],
    out: Annotated[Path, typer.Option(help='Output JSONL of {"query_id", "hit_id", "score"}.')],
    delta: Delta = 0.01,
    embed_cache: EmbedCache = None,
) -> None:
    """Look up queries against entries in a fresh cache, with the default policy.

    Entries load into one scope; each query gets an exact lookup, then nearest
    neighbour + verifier.

    Example: frugate cache simulate --entries E.jsonl --queries Q.jsonl --out R.jsonl
    """
    from cache.evaluate import simulate as run

    ents = _read_jsonl(entries)
    qs = _read_jsonl(queries)
    embed = _embedder(embed_cache)
    ev = embed([str(e["text"]) for e in ents])
    qv = embed([str(q["text"]) for q in qs])
    results = run(
        [(str(e["id"]), str(e["text"])) for e in ents],
        ev,
        [(str(q["id"]), str(q["text"])) for q in qs],
        qv,
        delta=delta,
    )
    with open(out, "w", encoding="utf-8") as fh:
        for r in results:
            row = {"query_id": r.query_id, "hit_id": r.hit_id, "score": round(r.score, 6)}
            fh.write(json.dumps(row) + "\n")
    hits = sum(r.hit_id is not None for r in results)
    typer.echo(f"{len(results)} queries, {hits} hits -> {out}")


@app.command("eval")
def evaluate(
    pairs: Annotated[Path, typer.Option(help='JSONL of {"a", "b", "duplicate"}.')],
    split: Annotated[
        str, typer.Option(help="all, or train/calib/dev: the documented split of the file.")
    ] = "all",
    delta: Delta = 0.01,
    embed_cache: EmbedCache = None,
) -> None:
    """Print precision, recall and hit rate of the default policy on labelled pairs.

    Every `a` is an entry, every `b` a query. A hit is right when the entry is the same
    question by the file's labels (same text, or linked by duplicate=1 pairs); any
    other hit is a false hit. Recall: share of duplicate pairs whose query got a right hit.

    Example: frugate cache eval --pairs ../shared/data/cache/qqp_pairs.jsonl --split dev
    """
    from cache.data import load_pairs, split_pairs
    from cache.evaluate import pair_report
    from cache.evaluate import simulate as run

    rows = load_pairs(pairs)
    if split != "all":
        rows = split_pairs(rows)[split]
    embed = _embedder(embed_cache)
    av = embed([p.a for p in rows])
    bv = embed([p.b for p in rows])
    results = run(
        [(f"e{i}", p.a) for i, p in enumerate(rows)],
        av,
        [(f"q{i}", p.b) for i, p in enumerate(rows)],
        bv,
        delta=delta,
    )
    report = pair_report(rows, [r.hit_id for r in results])
    typer.echo(f"pairs      {report.pairs}")
    typer.echo(f"duplicates {report.duplicates}")
    typer.echo(f"hits       {report.hits}")
    typer.echo(f"precision  {report.precision:.4f}")
    typer.echo(f"recall     {report.recall:.4f}")
    typer.echo(f"hit_rate   {report.hit_rate:.4f}")
    semantic = [r.hit_id if r.kind == "semantic" else None for r in results]
    sem = pair_report(rows, semantic)
    typer.echo(
        f"of which semantic: hits {sem.hits}, precision {sem.precision:.4f}, "
        f"recall {sem.recall:.4f} (delta {delta})"
    )


@app.command()
def audit(
    pairs: Annotated[Path, typer.Option(help='JSONL of {"a", "b", "duplicate"}.')],
    split: Annotated[
        str, typer.Option(help="all, or train/calib/dev: the documented split of the file.")
    ] = "all",
    precision: Annotated[float, typer.Option(help="Target overall precision.")] = 0.99,
    recall: Annotated[float, typer.Option(help="Target recall.")] = 0.40,
) -> None:
    """How clean the labels are where a cache is surest, and what semantic hits would need.

    Prints the share labelled duplicate among pairs that differ only by case and spaces,
    only by punctuation, by word order, by one or two words; then the labelled precision
    semantic hits must reach, on top of the exact tier, for the target. No model needed.

    Example: frugate cache audit --pairs ../shared/data/cache/qqp_pairs.jsonl --split dev
    """
    from cache.audit import audit_labels, exact_tier, needed_precision
    from cache.data import load_pairs, split_pairs

    rows = load_pairs(pairs)
    if split != "all":
        rows = split_pairs(rows)[split]
    typer.echo(f"{'texts differ by':34s} {'pairs':>6s} {'dup share':>9s}  95% interval")
    for c in audit_labels(rows):
        low, high = c.interval
        typer.echo(f"{c.name:34s} {c.pairs:6d} {c.share:9.3f}  [{low:.3f}, {high:.3f}]")
    hits, caught = exact_tier(rows)
    duplicates = sum(p.duplicate for p in rows)
    need = needed_precision(hits, caught, duplicates, precision, recall)
    typer.echo(
        f"exact tier: {hits} hits (always right), recall {caught / max(duplicates, 1):.4f} "
        f"of {duplicates} duplicate pairs"
    )
    typer.echo(
        f"precision {precision} at recall {recall} needs semantic hits labelled "
        f"duplicate at >= {need:.4f}"
    )


@app.command()
def train(
    pairs: Annotated[Path, typer.Option(help="Labelled pairs (split by cache.data).")] = (
        SHARED_PAIRS
    ),
    out: Annotated[Path | None, typer.Option(help="Artifact (default: the bundled one).")] = None,
    embed_cache: EmbedCache = DEFAULT_EMBED_CACHE,
) -> None:
    """Rebuild the verifier artifact (train split) and calibrate it (calib split).

    The dev split is left untouched.

    Example: frugate cache train --pairs ../shared/data/cache/qqp_pairs.jsonl
    """
    from cache.data import load_pairs
    from cache.train import train_verifier
    from cache.verify import DEFAULT_VERIFIER

    figures = train_verifier(load_pairs(pairs), _embedder(embed_cache), out or DEFAULT_VERIFIER)
    typer.echo(json.dumps(figures, indent=2))
