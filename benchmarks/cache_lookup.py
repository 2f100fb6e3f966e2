"""Cache lookup latency and micro-batching throughput.

    python benchmarks/cache_lookup.py [--backend auto|onnx|torch] [--entries 2000]

Prints:
- raw forward p50: one `embedder.embed([text])` call (the model alone);
- cache lookup p50: what the gateway does per request: `await BatchingEmbedder.embed_one`,
  keys, exact lookup, semantic lookup + verifier, over a cache of N real entries;
- throughput of 32 concurrent lookups, micro-batched vs one forward pass per lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from cache import MemoryStore, ResponseCache, Scope, request_keys
from embedder import BatchingEmbedder, MiniLMEmbedder

PAIRS = Path(__file__).resolve().parents[1] / "../shared/data/cache/qqp_pairs.jsonl"


def chat(text: str) -> dict[str, object]:
    return {"model": "small", "messages": [{"role": "user", "content": text}]}


def load_texts(n_entries: int, n_queries: int) -> tuple[list[str], list[str]]:
    """Entries are the `a`s, queries the `b`s of the shared pairs (a mix of hits and misses)."""
    with open(PAIRS, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return [r["a"] for r in rows[:n_entries]], [r["b"] for r in rows[:n_queries]]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="auto", choices=["auto", "onnx", "torch"])
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    entries, queries = load_texts(args.entries, args.queries)

    model = MiniLMEmbedder(backend=args.backend, threads=args.threads)
    batcher = BatchingEmbedder(model)
    print(f"backend={model.backend} entries={len(entries)} queries={len(queries)}")
    cache = ResponseCache(MemoryStore())
    await cache.open()
    scope = Scope("bench")
    for text, vec in zip(entries, model.embed(entries), strict=True):
        await cache.put(request_keys(chat(text), scope), {"text": text}, vec)

    for text in queries[:20]:  # warm-up
        model.embed([text])
    raw = []
    for text in queries:
        t0 = time.perf_counter()
        model.embed([text])
        raw.append((time.perf_counter() - t0) * 1000)

    async def lookup(text: str) -> bool:
        keys = request_keys(chat(text), scope)
        hit = await cache.lookup_exact(keys)
        if hit is None:
            vec = await batcher.embed_one(text)
            hit = await cache.lookup_semantic(keys, vec)
        return hit is not None

    lookups, hits = [], 0
    for text in queries:
        t0 = time.perf_counter()
        hits += await lookup(text)
        lookups.append((time.perf_counter() - t0) * 1000)
    raw_p50, look_p50 = statistics.median(raw), statistics.median(lookups)
    print(f"raw forward p50      {raw_p50:7.2f} ms")
    print(
        f"cache lookup p50     {look_p50:7.2f} ms   ratio {look_p50 / raw_p50:.2f}x"
        f"   (hits {hits}/{len(queries)})"
    )

    batch = queries[:32]
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        await asyncio.gather(*(lookup(t) for t in batch))
    batched = args.rounds * len(batch) / (time.perf_counter() - t0)

    loop = asyncio.get_running_loop()

    async def unbatched_lookup(text: str) -> None:
        keys = request_keys(chat(text), scope)
        if await cache.lookup_exact(keys) is None:
            vec = (await loop.run_in_executor(batcher._pool, model.embed, [text]))[0]
            await cache.lookup_semantic(keys, vec)

    t0 = time.perf_counter()
    for _ in range(args.rounds):
        await asyncio.gather(*(unbatched_lookup(t) for t in batch))
    unbatched = args.rounds * len(batch) / (time.perf_counter() - t0)
    print(
        f"32 concurrent: batched {batched:7.1f}/s  unbatched {unbatched:7.1f}/s"
        f"  speed-up {batched / unbatched:.2f}x"
    )
    batcher.close()


if __name__ == "__main__":
    asyncio.run(main())
