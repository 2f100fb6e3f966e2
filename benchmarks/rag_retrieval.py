"""Retrieval latency at 100k chunks, excluding the query embedding.

Builds (once, cached under .cache/rag/bench-<n>) a collection of synthetic documents made of
shuffled Cranfield sentences, with random unit vectors standing in for embeddings (the index
cannot tell), then times `Collection.search` — the call the gateway makes per request, with
the precomputed query vector — for each mode, plus the bare index lookups.

    python benchmarks/rag_retrieval.py [--chunks 100000] [--queries 300] [--rebuild]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rag import CollectionStore, DocumentInput, load_encoding, read_jsonl

ROOT = Path(__file__).resolve().parent.parent
CRANFIELD = ROOT.parent / "shared" / "data" / "rag" / "cranfield"


class RandomEmbedder:
    """Deterministic random unit vectors (seeded by the text), MiniLM's width."""

    dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            rng = np.random.default_rng(abs(hash(text)) % (2**32))
            v = rng.standard_normal(self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


def sentences() -> list[str]:
    out = []
    for row in read_jsonl(CRANFIELD / "corpus.jsonl"):
        out += [s.strip() for s in re.split(r"(?<=\.)\s+", row["text"]) if len(s.split()) > 3]
    return out


def build(store: CollectionStore, n_chunks: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    pool = sentences()
    collection = store.create("bench", "bench")
    # Documents of ~900 tokens (~5 chunks each at the default size), added until n_chunks.
    batch: list[DocumentInput] = []
    started = time.perf_counter()
    for d in itertools.count():
        paragraphs = [" ".join(rng.sample(pool, 8)) for _ in range(4)]
        text = f"# Synthetic report {d}\n\n" + "\n\n".join(paragraphs)
        batch.append(DocumentInput(text, doc_id=f"d{d}", filename=f"d{d}.md"))
        if len(batch) == 500:
            collection.add_documents(batch, save=False)
            batch.clear()
            n = collection.info().chunk_count
            print(f"  {n} chunks, {time.perf_counter() - started:.0f}s", flush=True)
            if n >= n_chunks:
                break
    collection.flush()


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"


def timed(fn: Callable[[str, np.ndarray], object], texts: list[str], vectors: np.ndarray) -> str:
    """Wall-clock and CPU (this thread's) time per call. On a shared machine the wall clock
    includes time spent waiting for a core; CPU time is what one search costs on an idle one."""
    wall, cpu = [], []
    for text, vec in zip(texts, vectors, strict=True):
        t0, c0 = time.perf_counter(), time.thread_time()
        fn(text, vec)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return f"wall {percentiles(wall)} | cpu {percentiles(cpu)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    root = ROOT / ".cache" / "rag" / f"bench-{args.chunks}"
    if args.rebuild:
        shutil.rmtree(root, ignore_errors=True)
    embedder = RandomEmbedder()
    store = CollectionStore(root, embedder, encoding=load_encoding())
    if not store.list("bench"):
        print(f"building {args.chunks} chunks under {root} (once) ...", flush=True)
        t0 = time.perf_counter()
        build(store, args.chunks)
        print(f"built in {time.perf_counter() - t0:.0f}s")
    t0 = time.perf_counter()
    store.close()
    store = CollectionStore(root, embedder, encoding=load_encoding())
    collection = store.get("bench", "bench")
    info = collection.info()
    index = collection._index  # the bare lookups, for the breakdown below
    print(
        f"opened in {time.perf_counter() - t0:.1f}s: {info.document_count} documents, "
        f"{info.chunk_count} chunks, dense index: {index.dense.kind}"
    )

    queries = [r["text"] for r in read_jsonl(CRANFIELD / "queries.jsonl")]
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.queries, embedder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [queries[i % len(queries)] for i in range(args.queries)]

    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    for mode in ("dense", "bm25", "fused"):
        for text, vec in zip(texts[:20], vectors[:20], strict=True):  # warm up
            collection.search(text, vec, k=args.k, mode=mode)
        result = timed(
            lambda t, v, m=mode: collection.search(t, v, k=args.k, mode=m), texts, vectors
        )
        print(f"Collection.search {mode:5s} k={args.k:<3d} {result}")
    print(
        f"{'dense index top-100':25s} "
        f"{timed(lambda t, v: index.dense.search(v, 100), texts, vectors)}"
    )
    print(
        f"{'bm25 index top-100':25s} "
        f"{timed(lambda t, v: index.bm25.search(t, 100), texts, vectors)}"
    )
    store.close()


if __name__ == "__main__":
    main()
