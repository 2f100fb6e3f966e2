"""Router decision latency: score (features + blocks + tree heads) + policy.decide, per request.

The shared embedding is computed before the timer starts (the gateway computes it once per
request for the cache, the router and RAG); this measures what routing adds on top. The
embedding's window (`embedder.query_window`, run before embedding) is timed on its own line.

    python benchmarks/router_decision.py [--n 2000] [--data /work/shared/data/routing/mmlu.csv ...]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

import router
from router.models import make_inputs

DATA = [
    Path("/work/shared/data/routing/mmlu.csv"),
    Path("/work/shared/data/routing/routerbench_train.csv"),
]


def _prompts(paths: list[Path], n: int) -> list[str]:
    pool = [p for path in paths if path.exists() for p in router.read_outcomes(path).prompts]
    if not pool:  # no shared data here: synthetic prompts of realistic sizes
        pool = [("Explain why the sky is blue. " * (1 + i % 40)) for i in range(1000)]
    random.Random(0).shuffle(pool)
    return pool[:n]


def _embeddings(prompts: list[str], real: bool) -> np.ndarray:
    if real:
        from embedder import MiniLMEmbedder
        from router.embeddings import embed_prompts

        return embed_prompts(prompts, MiniLMEmbedder, cache_dir=Path(".cache/router"))
    rng = np.random.default_rng(0)
    e = rng.normal(size=(len(prompts), 384)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _pct(xs: list[float]) -> str:
    a = np.asarray(xs) / 1000.0  # ns -> us
    return f"p50 {np.percentile(a, 50):7.1f} us   p99 {np.percentile(a, 99):7.1f} us"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--data", type=Path, nargs="*", default=DATA)
    ap.add_argument("--random-embeddings", action="store_true", help="skip MiniLM")
    args = ap.parse_args()

    t0 = time.perf_counter()
    r = router.load_default()
    load_ms = (time.perf_counter() - t0) * 1000
    policy = r.policy("auto", "small", "large", large_share=0.3)
    prompts = _prompts(args.data, args.n)
    embs = _embeddings(prompts, real=not args.random_embeddings)
    router.single_threaded_blas()  # as the gateway does (gateway/routing.py)
    for p, e in zip(prompts[:50], embs[:50], strict=True):  # warm-up
        policy.decide(r.score(p, e))

    from embedder import query_window

    query_window("warm up the tokenizer")
    model = r.model
    total: list[float] = []
    parts: dict[str, list[float]] = {"query_window (before embedding)": [], "features": []}
    parts.update({f"block {name}": [] for name in model.names})
    parts["tree heads"] = []
    for p, e in zip(prompts, embs, strict=True):
        t = time.perf_counter_ns()
        s = r.score(p, e)
        policy.decide(s, prompt_tokens=len(p) // 4, max_tokens=256, small_ctx=8192)
        total.append(time.perf_counter_ns() - t)
        t = time.perf_counter_ns()
        query_window(p)
        parts["query_window (before embedding)"].append(time.perf_counter_ns() - t)
        t = time.perf_counter_ns()
        x = make_inputs(p, e)
        parts["features"].append(time.perf_counter_ns() - t)
        for name, block in zip(model.names, model.blocks, strict=True):
            t = time.perf_counter_ns()
            block.transform([x])
            parts[f"block {name}"].append(time.perf_counter_ns() - t)
        level_one = model.level_one([x])[0]
        t = time.perf_counter_ns()
        model.gain_one(level_one)
        parts["tree heads"].append(time.perf_counter_ns() - t)

    chars = np.array([len(p) for p in prompts])
    print(f"router artifact load: {load_ms:.0f} ms; blocks: {', '.join(r.model.names)}")
    print(
        f"prompts: {len(prompts)} (chars p50 {np.median(chars):.0f}, p99 "
        f"{np.percentile(chars, 99):.0f})"
    )
    print(f"score + decide                     {_pct(total)}")
    for name, xs in parts.items():
        print(f"  {name:<32} {_pct(xs)}")


if __name__ == "__main__":
    main()
