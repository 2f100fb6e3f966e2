"""`frugate rag ...` commands: ingest documents, search a collection, evaluate retrieval.

Heavy modules (faiss, torch, the embedder) are imported inside the commands so that
`frugate --help` stays fast.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from embedder.base import Embedder
    from rag import Collection, CollectionStore, DocumentInput, SearchMode

app = typer.Typer(
    help=(
        "Retrieval-augmented generation: collections of documents to ground prompts on.\n\n"
        "Examples:\n\n"
        "  frugate rag ingest --collection handbook docs/ notes.md\n\n"
        "  frugate rag search --collection handbook --query 'how do refunds work'\n\n"
        "  frugate rag search --collection handbook --queries q.jsonl --k 10 --out run.jsonl\n\n"
        "  frugate rag eval --corpus corpus.jsonl --queries q.jsonl --qrels qrels.jsonl"
    ),
    no_args_is_help=True,
)

DEFAULT_DATA_DIR = Path("./data/rag")
DOCUMENT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".mdx", ".html", ".htm", ".xhtml", ".pdf")

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="Collections folder (the gateway's is <data_dir>/rag).")
]
Tenant = Annotated[str, typer.Option("--tenant", help="Owning tenant id.")]
Team = Annotated[str | None, typer.Option("--team", help="Owning / calling team id.")]
CollectionRef = Annotated[str, typer.Option("--collection", "-c", help="Collection name or id.")]
Mode = Annotated[str, typer.Option("--mode", help="fused | dense | bm25")]


def _embedder(cache_dir: Path | None = None) -> Embedder:
    from embedder import MiniLMEmbedder
    from rag import EmbeddingCache

    inner = MiniLMEmbedder()
    return EmbeddingCache(inner, cache_dir) if cache_dir else inner


def _store(data_dir: Path, embedder: Embedder) -> CollectionStore:
    from rag import CollectionStore

    return CollectionStore(data_dir, embedder)


def _check_mode(mode: str) -> SearchMode:
    from rag import SEARCH_MODES

    for known in SEARCH_MODES:
        if mode == known:
            return known
    raise typer.BadParameter(f"mode must be one of {', '.join(SEARCH_MODES)}")


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def _corpus_rows(path: Path) -> Iterator[DocumentInput]:
    """A JSONL corpus: one document per row {"id", "title", "text"} (+ optional "metadata")."""
    from rag import DocumentInput, read_jsonl

    for row in read_jsonl(path):
        yield DocumentInput(
            str(row.get("text", "")), doc_id=str(row["id"]), title=row.get("title") or None,
            metadata=dict(row.get("metadata") or {}), content_type="text/plain",
        )


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in (*DOCUMENT_SUFFIXES, ".jsonl"):
                    yield child
        elif path.exists():
            yield path
        else:
            raise _fail(f"no such file or directory: {path}")


def _documents(paths: list[Path], root_ids: bool) -> Iterator[DocumentInput]:
    from rag import DocumentInput

    for path in _files(paths):
        if path.suffix.lower() == ".jsonl":
            yield from _corpus_rows(path)
        else:
            doc_id = path.as_posix() if root_ids else None
            yield DocumentInput(path.read_bytes(), doc_id=doc_id, filename=path.name)


def _count(paths: list[Path]) -> int:
    """Documents `_documents` will yield (JSONL rows counted), for the progress bar."""
    total = 0
    for path in _files(paths):
        if path.suffix.lower() == ".jsonl":
            with path.open("rb") as fh:
                total += sum(1 for line in fh if line.strip())
        else:
            total += 1
    return total


def _ingest(
    collection: Collection, docs: Iterator[DocumentInput], batch: int, quiet: bool,
    total: int | None = None,
) -> tuple[int, int, list[str]]:
    """Add documents in batches with a progress bar; returns (documents, chunks, skipped)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from rag import InvalidDocument, RagError

    added = chunks = 0
    skipped: list[str] = []
    pending: list[DocumentInput] = []
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=quiet, transient=False) as bar:
        task = bar.add_task("documents", total=total)

        def skip(doc: DocumentInput, exc: InvalidDocument) -> None:
            skipped.append(f"{doc.doc_id or doc.filename}: {exc}")

        def flush() -> None:
            nonlocal added, chunks
            try:
                infos = collection.add_documents(pending, save=False, on_invalid=skip)
            except RagError as exc:
                raise _fail(str(exc)) from exc
            added += len(infos)
            chunks += sum(i.chunk_count for i in infos)
            bar.update(task, advance=len(pending))
            pending.clear()

        for doc in docs:
            pending.append(doc)
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        collection.flush()
    return added, chunks, skipped


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files, folders, or JSONL corpora.")],
    collection: CollectionRef,
    tenant: Tenant = "default",
    team: Team = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    create: Annotated[bool, typer.Option(help="Create the collection if missing.")] = True,
    path_ids: Annotated[
        bool, typer.Option("--path-ids", help="Use file paths as document ids (else random).")
    ] = False,
    batch: Annotated[int, typer.Option(help="Documents per embedding batch.")] = 32,
    embed_cache: Annotated[
        Path | None, typer.Option(help="Reuse embeddings stored here (keyed by text hash).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Parse, chunk, embed and index documents (text, Markdown, HTML, PDF).

    A `.jsonl` file is a corpus: one document per row {"id", "title", "text"}.

    Example: frugate rag ingest --collection handbook --tenant acme docs/ faq.md
    """
    from rag import CollectionNotFound

    store = _store(data_dir, _embedder(embed_cache))
    try:
        try:
            target = store.get(tenant, collection, team=team)
        except CollectionNotFound:
            if not create:
                raise _fail(f"collection {collection!r} not found") from None
            target = store.create(tenant, collection, team=team)
        docs = _documents(paths, path_ids)
        added, chunks, skipped = _ingest(target, docs, batch, quiet, _count(paths))
    finally:
        store.close()
    for line in skipped:
        typer.secho(f"skipped {line}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{added} documents, {chunks} chunks -> {collection} ({target.id})")


@app.command()
def search(
    collection: CollectionRef,
    queries: Annotated[
        Path | None, typer.Option(help='JSONL of {"id", "text"}; writes one row per query.')
    ] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="One query, shown.")] = None,
    k: Annotated[int, typer.Option("--k", help="Documents per query.")] = 10,
    out: Annotated[Path | None, typer.Option(help="Output JSONL (default: stdout).")] = None,
    mode: Mode = "fused",
    tenant: Tenant = "default",
    team: Team = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Search a collection.

    With --queries: writes {"query_id", "doc_ids": [...]} per query (document ids, ranked,
    deduplicated from chunks). With --query: prints the top chunks.

    Example: frugate rag search -c handbook --queries q.jsonl --k 10 --out run.jsonl
    """
    from rag import CollectionNotFound, load_queries

    search_mode = _check_mode(mode)
    if (queries is None) == (query is None):
        raise _fail("give exactly one of --queries or --query")
    embedder = _embedder()
    store = _store(data_dir, embedder)
    try:
        try:
            target = store.get(tenant, collection, team=team)
        except CollectionNotFound as exc:
            raise _fail(str(exc)) from exc
        if query is not None:
            for rank, hit in enumerate(target.search(query, k=k, mode=search_mode), start=1):
                typer.echo(f"{rank:>3}. {hit.score:.4f}  {hit.doc_id}  [{hit.context}]")
                typer.echo("     " + " ".join(hit.text.split())[:200])
            return
        assert queries is not None
        rows = load_queries(queries)
        vectors = embedder.embed([q.text for q in rows]) if search_mode != "bm25" else None
        sink = out.open("w", encoding="utf-8") if out else sys.stdout
        try:
            for i, q in enumerate(rows):
                vector = vectors[i] if vectors is not None else None
                ranked = target.search_documents(q.text, vector, k=k, mode=search_mode)
                line = {"query_id": q.id, "doc_ids": [doc_id for doc_id, _ in ranked]}
                sink.write(json.dumps(line) + "\n")
        finally:
            if out:
                sink.close()
    finally:
        store.close()


@app.command("eval")
def evaluate(
    corpus: Annotated[Path, typer.Option(help='JSONL of {"id", "title", "text"}.')],
    queries: Annotated[Path, typer.Option(help='JSONL of {"id", "text"}.')],
    qrels: Annotated[Path, typer.Option(help='JSONL of {"query_id", "doc_id", "relevance"}.')],
    embed_cache: Annotated[
        Path | None,
        typer.Option(help="Reuse embeddings across runs (keyed by text hash)."),
    ] = Path(".cache/rag/embeddings"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Score dense, BM25 and fused retrieval (nDCG@10, recall@100) on a corpus.

    The corpus is ingested into a temporary collection, with the same chunking and search
    as the gateway's.

    Example: frugate rag eval --corpus corpus.jsonl --queries q.jsonl --qrels qrels.jsonl
    """
    from rag import evaluate_collection, load_qrels, load_queries

    query_rows = load_queries(queries)
    judgments = load_qrels(qrels)
    embedder = _embedder(embed_cache)
    with tempfile.TemporaryDirectory(prefix="frugate-rag-eval-") as tmp:
        store = _store(Path(tmp), embedder)
        try:
            target = store.create("eval", "eval")
            added, chunks, skipped = _ingest(
                target, _corpus_rows(corpus), 64, quiet, _count([corpus])
            )
            results = evaluate_collection(target, embedder, query_rows, judgments)
        finally:
            store.close()
    if as_json:
        typer.echo(json.dumps({"documents": added, "chunks": chunks, **results}, indent=2))
        return
    _print_table(results, added, chunks, len(skipped))


def _print_table(results: dict[str, Any], docs: int, chunks: int, skipped: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{docs} documents ({skipped} skipped), {chunks} chunks")
    table = Table()
    table.add_column("retrieval")
    table.add_column("nDCG@10", justify="right")
    table.add_column("recall@100", justify="right")
    for mode, metrics in results.items():
        table.add_row(mode, f"{metrics['ndcg@10']:.4f}", f"{metrics['recall@100']:.4f}")
    console.print(table)
