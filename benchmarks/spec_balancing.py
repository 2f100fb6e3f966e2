"""Speculation-aware balancing vs fixed choices, on simulated vLLM replicas (issue 7).

    python -m benchmarks.spec_balancing [--duration 20] [--loads 2,32,160] [--json out.json]

Hardware: two replicas that run speculative decoding and two that do not (the simulator's
`realistic-large` cost model: speculation is ~2x faster per token at batch 1, even at batch
~64 and slower beyond — the shape vLLM reports for draft models). One gateway exposes them as
four pools over the same replicas:
    spec-only   all traffic to the speculating replicas   (fixed choice 1)
    plain-only  all traffic to the other two              (fixed choice 2)
    blind       all four, power-of-two-choices ignoring speculation (the same hardware as
                aware: shows what the speculation-awareness itself adds)
    aware       all four; speculating replicas preferred while their batch is below
                `spec_max_running`, then power-of-two-choices over every replica
At each concurrency, streaming requests with a fixed 64-token answer run for `--duration`
seconds per pool; the table gives p50/p99 end-to-end latency and time to first token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from tests.gateway.harness import GatewayServer, settings_for
from workers.sim.process import SimServer

OUTPUT_TOKENS = 64
POOLS = ("spec-only", "plain-only", "blind", "aware")


def _sim(spec: bool) -> SimServer:
    return SimServer(model="sim-large", profile="realistic-large", spec_k=4 if spec else 0,
                     output_tokens=(OUTPUT_TOKENS, OUTPUT_TOKENS)).start()


def _settings(spec: list[SimServer], plain: list[SimServer], limit: int, data: Path) -> Any:
    def replicas(sims: list[SimServer], speculative: bool) -> list[dict[str, Any]]:
        return [{"url": s.url, "speculative": speculative} for s in sims]

    common = {"model": "sim-large", "max_context": 32768, "price": {"input": 1, "output": 1},
              "timeouts": {"first_byte_s": 120, "total_s": 600}}
    pools = [
        {"name": "spec-only", "replicas": replicas(spec, True), **common},
        {"name": "plain-only", "replicas": replicas(plain, False), **common},
        {"name": "blind", "replicas": replicas(spec, False) + replicas(plain, False), **common},
        {"name": "aware", "replicas": replicas(spec, True) + replicas(plain, False),
         "spec_max_running": limit, **common},
    ]
    # The response cache is off: the requests are identical and would be replayed from it.
    return settings_for(pools, data, limits={"max_in_flight": 4096, "tenant_share": 1.0},
                        upstream={"scrape_interval_s": 0.25}, cache={"enabled": False})


async def _load(base: str, key: str, pool: str, concurrency: int,
                duration: float) -> dict[str, Any]:
    body = {"model": pool, "stream": True, "max_tokens": OUTPUT_TOKENS,
            "min_tokens": OUTPUT_TOKENS, "messages": [{"role": "user", "content": "Go on."}]}
    latencies: list[float] = []
    ttfts: list[float] = []
    kinds: dict[str, int] = {}  # what each error was: status + body head, or the exception
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=concurrency + 8)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits,
                                 headers={"authorization": f"Bearer {key}"}) as client:

        async def worker() -> None:
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                first = None
                kind = ""
                try:
                    async with client.stream("POST", "/chat/completions", json=body) as r:
                        head = b""
                        async for chunk in r.aiter_raw():
                            if first is None:
                                first = time.monotonic() - t0
                                head = chunk[:160]
                        if r.status_code != 200:
                            kind = f"{r.status_code} {head.decode(errors='replace')}"
                except httpx.HTTPError as exc:
                    kind = f"{type(exc).__name__}: {exc}"[:160]
                if kind:
                    kinds[kind] = kinds.get(kind, 0) + 1
                    continue
                latencies.append(time.monotonic() - t0)
                ttfts.append(first or 0.0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    q = statistics.quantiles
    return {"requests": len(latencies), "errors": sum(kinds.values()), "error_kinds": kinds,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * q(latencies, n=100)[98] if len(latencies) > 1 else 0.0,
            "ttft_p50_ms": 1000 * statistics.median(ttfts),
            "rps": len(latencies) / duration}


def _load_sync(base: str, key: str, pool: str, concurrency: int,
               duration: float) -> dict[str, Any]:
    return asyncio.run(_load(base, key, pool, concurrency, duration))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--loads", default="2,32,160")
    ap.add_argument("--spec-max-running", type=int, default=8)  # the config default
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    loads = [int(x) for x in args.loads.split(",")]
    spec = [_sim(True) for _ in range(2)]
    plain = [_sim(False) for _ in range(2)]
    results: list[dict[str, Any]] = []
    try:
        # The load generator runs in its own process: in the gateway's process it would take
        # the GIL from the gateway at high concurrency and measure itself.
        with tempfile.TemporaryDirectory() as d, GatewayServer(
                _settings(spec, plain, args.spec_max_running, Path(d))) as gw, \
                ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as lg:
            key = gw.make_key(tenant="bench")
            for c in loads:
                for pool in POOLS:
                    time.sleep(1.0)  # let the replicas drain between runs
                    r = lg.submit(_load_sync, gw.base_url, key, pool, c, args.duration).result()
                    results.append({"concurrency": c, "pool": pool, **r})
                    print(f"c={c:<4} {pool:<11} {r['requests']:>6} req  p50 {r['p50_ms']:8.1f} ms"
                          f"  p99 {r['p99_ms']:8.1f} ms  ttft p50 {r['ttft_p50_ms']:7.1f} ms"
                          f"{'  errors: ' + str(r['error_kinds']) if r['errors'] else ''}",
                          file=sys.stderr)
    finally:
        for s in spec + plain:
            s.close()
    print(f"\nspeculation-aware balancing (simulated realistic-large replicas: 2 speculating + "
          f"2 plain; {OUTPUT_TOKENS}-token streamed answers; {args.duration:.0f} s per cell; "
          f"spec_max_running={args.spec_max_running}; load average "
          f"{os.getloadavg()[0]:.2f})\n")
    print("| concurrency | pool | requests | errors | p50 ms | p99 ms | TTFT p50 ms "
          "| p50 vs best fixed |")
    print("|---|---|---|---|---|---|---|---|")
    verdicts = []
    for c in loads:
        cells = {r["pool"]: r for r in results if r["concurrency"] == c}
        best = min(cells["spec-only"]["p50_ms"], cells["plain-only"]["p50_ms"])
        for pool in POOLS:
            r = cells[pool]
            note = f"{r['p50_ms'] / best:.2f}x" if pool in ("aware", "blind") else ""
            print(f"| {c} | {pool} | {r['requests']} | {r['errors']} | {r['p50_ms']:.1f} | "
                  f"{r['p99_ms']:.1f} | "
                  f"{r['ttft_p50_ms']:.1f} | {note} |")
        verdicts.append((c, cells["aware"]["p50_ms"] <= best * 1.05))
    print()
    for c, ok in verdicts:
        print(f"  [{'ok' if ok else 'MISSED'}] c={c}: aware p50 within 5% of the better fixed "
              "choice or better")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
