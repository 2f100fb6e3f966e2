"""What tracing costs the pipeline: ns per stage context, off (the default) and on.

Each figure is one `with trace.stage(name):` around nothing, as the pipeline writes it, minus
an empty loop. "off" is the shared no-op (`gateway.tracing.OFF`); "on" records real SDK spans
(ParentBased sampler, in-memory exporter, so no network in the figure). A request goes through
9-10 stages, so a request pays about ten times the per-stage figure.

    python benchmarks/tracing_overhead.py [--n 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

from gateway.config import Tracing
from gateway.pipeline import Call
from gateway.tracing import build_tracer

STAGES = ("authenticate", "queue", "admit", "cache", "route", "dispatch", "settle")


def _per_op_ns(body: Callable[[int], None], n: int, rounds: int) -> float:
    """Median over rounds of ns per iteration."""
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        body(n)
        samples.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(samples)


def _noop(name: str) -> None:
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200_000, help="stage contexts per round (off)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    def empty(n: int) -> None:
        for _ in range(n):
            pass

    off = build_tracer(Tracing())
    t_off = off.begin(Call("req_bench", "chat", b"", {}, time.perf_counter()))

    def stage_off(n: int) -> None:
        stage = t_off.stage
        for _ in range(n):
            with stage("admit"):
                pass

    def request_off(n: int) -> None:  # begin + every stage + finish, as one request does
        for _ in range(n):
            t = off.begin(None)  # type: ignore[arg-type]
            for name in STAGES:
                with t.stage(name):
                    pass
            t.finish(None)  # type: ignore[arg-type]

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    on = build_tracer(Tracing(enabled=True), exporter=exporter)
    t_on = on.begin(Call("req_bench", "chat", b"", {}, time.perf_counter()))

    def stage_on(n: int) -> None:
        for _ in range(n):
            with t_on.stage("admit"):
                pass
        exporter.clear()

    def plain_call(n: int) -> None:  # for scale: one call of a Python function
        f = _noop
        for _ in range(n):
            f("admit")

    def null_context(n: int) -> None:  # for scale: the standard library's no-op
        nc = contextlib.nullcontext()
        for _ in range(n):
            with nc:
                pass

    base = _per_op_ns(empty, args.n, args.rounds)
    n_on = max(1000, args.n // 50)
    rows = [
        ("for scale: one call of an empty Python function", _per_op_ns(plain_call, args.n,
                                                                        args.rounds) - base),
        ("for scale: `with contextlib.nullcontext():`", _per_op_ns(null_context, args.n,
                                                                    args.rounds) - base),
        ("off: one stage context", _per_op_ns(stage_off, args.n, args.rounds) - base),
        (f"off: one request (begin + {len(STAGES)} stages + finish)",
         _per_op_ns(request_off, args.n // 10, args.rounds) - base),
        ("on: one stage span (SDK, in-memory export)",
         _per_op_ns(stage_on, n_on, args.rounds) - base),
    ]
    on.close()
    print(f"empty loop: {base:.1f} ns per iteration (subtracted)")
    print("| what | ns |")
    print("|---|---|")
    for name, ns in rows:
        print(f"| {name} | {ns:,.0f} |")


if __name__ == "__main__":
    main()
