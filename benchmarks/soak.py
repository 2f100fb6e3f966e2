"""Soak + exactness: 10,000 mixed requests through two gateway processes sharing Redis.

    python -m benchmarks.soak                      # 10,000 requests (2-3 minutes here)
    python -m benchmarks.soak --requests 2000      # a shorter run

Two `frugate serve` processes share Redis (admission, holds, the ledger stream) and a fresh
PostgreSQL database; two simulated vLLM replicas serve one pool. The traffic, in waves of
1,000 (the simulator keeps its last 2,000 usage records, read after every wave):
- streaming (with and without `include_usage`) and non-streaming chat completions;
- 5% injected upstream faults: errors before the first byte (retried, then a 5xx) and
  failures mid-generation (an error event in a stream, a 5xx otherwise);
- 10% client aborts: streams dropped after a few chunks, non-streaming calls given up on.

Afterwards it checks, and prints:
- the ledger equals the simulator's priced usage exactly: per request (prompt and completion
  tokens, cost) and in total;
- no reservation is left open (Redis holds) and the ledger stream is drained;
- memory stayed flat: RSS of both gateway processes after each wave.
Exit status 0 only if every check holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from tests.gateway.money import MODEL_PRICE, PRICE, ledger_rows, seed
from tests.gateway.procs import REDIS_URL, GatewayProcess, fresh_postgres
from workers.sim.process import SimServer

WAVE = 1000
MSGS = [
    [{"role": "user", "content": "Write a short note about budgets."}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "List three uses of a message queue."}],
    [{"role": "user", "content": "Explain retries before the first byte in one paragraph."}],
]
# RSS may grow while allocators and caches warm up; after the first waves it must stay within
# this much of its level (per process).
RSS_SLACK_MB = 25.0


@dataclass
class Tally:
    kinds: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    ids: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)


def _kind(rng: random.Random) -> str:
    x = rng.random()
    if x < 0.02:
        return "fault_error"
    if x < 0.05:
        return "fault_midstream"
    if x < 0.10:
        return "abort_stream"
    if x < 0.15:
        return "abort_json"
    return "stream" if x < 0.575 else "json"


async def _one(http: httpx.AsyncClient, url: str, i: int, kind: str, rng: random.Random,
               tally: Tally) -> None:
    body: dict[str, Any] = {"model": "small", "messages": MSGS[i % len(MSGS)],
                            "max_tokens": rng.randint(5, 60)}
    if kind in ("stream", "abort_stream") or (kind.startswith("fault") and i % 2):
        body["stream"] = True
        if i % 3 == 0:
            body["stream_options"] = {"include_usage": True}
    if kind == "fault_error":
        body["sim"] = {"fault": "error"}
    elif kind == "fault_midstream":
        body["sim"] = {"fault": "midstream_error", "after_tokens": rng.randint(1, 4)}
        body["max_tokens"] = 60
    tally.kinds[kind] += 1
    target = url + "/v1/chat/completions"
    try:
        if kind == "abort_json":
            body |= {"max_tokens": 400, "min_tokens": 400}  # ~0.4 s of generation
            with contextlib.suppress(httpx.TimeoutException):
                r = await http.post(target, json=body, timeout=0.05 + rng.random() * 0.3)
                tally.ids.add(r.headers.get("x-frugate-request-id", ""))
                tally.statuses[f"{kind}:completed-{r.status_code}"] += 1
                return
            tally.statuses[f"{kind}:aborted"] += 1
            return
        async with http.stream("POST", target, json=body) as r:
            tally.ids.add(r.headers.get("x-frugate-request-id", ""))
            chunks = 0
            first = b""
            whole: list[bytes] = []
            async for chunk in r.aiter_raw():
                chunks += 1
                first = first or chunk[:300]
                whole.append(chunk)
                if kind == "abort_stream" and chunks >= 1 + i % 4:
                    tally.statuses[f"{kind}:aborted"] += 1
                    return
            raw_tail = r.status_code
        tally.statuses[f"{kind}:{raw_tail}"] += 1
        expected = 200 if not kind.startswith("fault") else (200 if body.get("stream") and
                                                             kind == "fault_midstream" else 500)
        if (expected == 200) != (raw_tail == 200):
            tally.unexpected.append(f"{kind} -> {raw_tail}: {first.decode(errors='replace')}")
        elif kind == "stream":  # a healthy stream ends with [DONE] and carries no error event
            text = b"".join(whole)
            if not text.endswith(b"data: [DONE]\n\n") or b'data: {"error"' in text:
                tally.unexpected.append(f"stream body: ...{text[-300:].decode(errors='replace')}")
    except httpx.HTTPError as exc:
        tally.unexpected.append(f"{kind}: {type(exc).__name__}: {exc}")


async def _wave(urls: list[str], key: str, start: int, n: int, concurrency: int,
                rng: random.Random, tally: Tally) -> None:
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits,
                                 headers={"authorization": f"Bearer {key}"}) as http:

        async def run(i: int) -> None:
            kind = _kind(rng)
            async with sem:
                await _one(http, urls[i % len(urls)], i, kind, rng, tally)

        await asyncio.gather(*(run(i) for i in range(start, start + n)))


def _collect_usage(sims: list[SimServer], usage: dict[str, list[int]],
                   seen: set[tuple[int, str]], unbilled: Counter[str]) -> None:
    """Per gateway request id, the tokens the replicas reported for attempts that delivered
    something. An attempt that failed with a 5xx before any token reached the gateway is the
    service's failure, not the client's: its prefill is counted in `unbilled`, not billed."""
    for n, sim in enumerate(sims):
        for rec in sim.usage(limit=2000)["recent"]:
            rid = rec.get("x_request_id")
            if not rid or (n, rec["id"]) in seen:
                continue
            seen.add((n, rec["id"]))
            if rec["status"] == "error" and rec["completion_tokens"] == 0:
                unbilled["attempts"] += 1
                unbilled["prompt_tokens"] += rec["prompt_tokens"]
                usage.setdefault(rid, [0, 0])
                continue
            acc = usage.setdefault(rid, [0, 0])
            acc[0] += rec["prompt_tokens"]
            acc[1] += rec["completion_tokens"]


def _rss_mb(gws: list[GatewayProcess]) -> list[float]:
    out = []
    for g in gws:
        assert g.proc is not None
        proc = psutil.Process(g.proc.pid)
        total = proc.memory_info().rss + sum(c.memory_info().rss
                                             for c in proc.children(recursive=True))
        out.append(total / 2**20)
    return out


def _redis_leftovers(prefix: str) -> tuple[list[str], int]:
    """(request ids of open holds, ledger events not yet written) under this run's prefix."""
    r = redis.Redis.from_url(REDIS_URL)
    try:
        holds = [m.decode() for k in r.scan_iter(f"{prefix}:*:holds")
                 for m in r.zrange(k, 0, -1)]
        stream = int(r.xlen(f"{prefix}:ledger")) if r.exists(f"{prefix}:ledger") else 0
        return holds, stream
    finally:
        r.close()


def _cleanup_redis(prefix: str) -> None:
    r = redis.Redis.from_url(REDIS_URL)
    try:
        for k in r.scan_iter(f"{prefix}*"):
            r.delete(k)
    finally:
        r.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    prefix = "fsoak-" + secrets.token_hex(4)
    tally = Tally()
    usage: dict[str, list[int]] = {}
    seen: set[tuple[int, str]] = set()
    unbilled: Counter[str] = Counter()
    rss: list[list[float]] = []
    t0 = time.monotonic()
    load0 = psutil.getloadavg()
    with fresh_postgres() as db, tempfile.TemporaryDirectory(prefix="frugate-soak-") as tmp:
        key, _ = asyncio.run(seed(db, team_budget_usd="1000000"))
        sims = [SimServer(model="sim-small", profile="fast", itl_ms=1.0,
                          output_tokens=(10, 60)).start() for _ in range(2)]
        cfg = {"database_url": db, "redis_url": REDIS_URL, "redis_prefix": prefix,
               "master_key": "fk-soak-master", "logging": {"level": "WARNING"},
               "pools": [{"name": "small", "model": "sim-small", "price": PRICE,
                          "max_context": 8192, "replicas": [s.url for s in sims]}],
               "upstream": {"retries": 2, "retry_backoff_ms": 5, "eject_after_failures": 50},
               "ledger": {"claim_idle_ms": 2000},
               # Every request must reach a replica: this run checks upstream billing.
               "cache": {"enabled": False}}
        gws = [GatewayProcess(cfg, Path(tmp) / n).start() for n in ("a", "b")]
        try:
            urls = [g.url for g in gws]
            done = 0
            while done < args.requests:
                n = min(WAVE, args.requests - done)
                asyncio.run(_wave(urls, key, done, n, args.concurrency, rng, tally))
                done += n
                time.sleep(0.5)  # aborted sequences leave the simulator's batch
                _collect_usage(sims, usage, seen, unbilled)
                rss.append(_rss_mb(gws))
                print(f"  wave {len(rss):2d}: {done:6d} requests, {time.monotonic() - t0:6.1f} s, "
                      f"RSS " + " / ".join(f"{m:.1f}" for m in rss[-1]) + " MB", flush=True)
            elapsed = time.monotonic() - t0
            deadline = time.monotonic() + 60
            holds, backlog = _redis_leftovers(prefix)
            while (holds or backlog) and time.monotonic() < deadline:
                time.sleep(0.5)
                holds, backlog = _redis_leftovers(prefix)
            rows = ledger_rows(db, expect=len(usage), timeout=60)
            time.sleep(2.0)  # a last batch in flight
            rows = ledger_rows(db, expect=len(usage), timeout=1)
            if tally.unexpected:
                for g in gws:
                    print(f"--- {g.log_path.name} (tail)\n{g.log()[-3000:]}")
        finally:
            for g in gws:
                g.stop()
            for s in sims:
                s.close()
            _cleanup_redis(prefix)
    return _report(args, tally, usage, unbilled, rows, rss, holds, backlog, elapsed, load0)


def _report(args: argparse.Namespace, tally: Tally, usage: dict[str, list[int]],
            unbilled: Counter[str], rows: list[dict[str, Any]], rss: list[list[float]],
            holds: list[str], backlog: int, elapsed: float,
            load0: tuple[float, float, float]) -> int:
    by_id = {r["request_id"]: r for r in rows}
    mismatched = []
    for rid in set(usage) | set(by_id):
        prompt, completion = usage.get(rid, [0, 0])
        row = by_id.get(rid)
        if row is None:
            if prompt or completion:
                mismatched.append(f"{rid}: upstream billed {prompt}/{completion}, no ledger row")
            continue
        if (row["prompt_tokens"], row["completion_tokens"]) != (prompt, completion) or \
                row["cost_micros"] != MODEL_PRICE.cost(prompt, completion):
            mismatched.append(f"{rid} [{row['status']}]: ledger {row['prompt_tokens']}/"
                              f"{row['completion_tokens']}, upstream {prompt}/{completion}")
    ledger_cost = sum(r["cost_micros"] for r in rows)
    upstream_cost = sum(MODEL_PRICE.cost(p, c) for p, c in usage.values())
    statuses = Counter(r["status"] for r in rows)
    warm = rss[min(2, len(rss) - 1)]
    growth = [last - w for last, w in zip(rss[-1], warm, strict=True)]
    peak = [max(r[i] for r in rss) for i in range(len(warm))]
    flat = all(g <= RSS_SLACK_MB for g in growth)
    exact = not mismatched and ledger_cost == upstream_cost
    unrecorded = sorted(tally.ids - set(by_id) - {""})
    ok = exact and not holds and backlog == 0 and flat and not tally.unexpected \
        and not unrecorded
    figures = {
        "requests": args.requests, "concurrency": args.concurrency, "seconds": round(elapsed, 1),
        "requests_per_s": round(args.requests / elapsed, 1), "load_avg_before": load0,
        "kinds": dict(sorted(tally.kinds.items())),
        "client_outcomes": dict(sorted(tally.statuses.items())),
        "unexpected_client_outcomes": tally.unexpected[:20],
        "ledger_rows": len(rows), "ledger_status": dict(sorted(statuses.items())),
        "upstream_requests_seen": len(usage),
        "ledger_prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "upstream_prompt_tokens": sum(p for p, _ in usage.values()),
        "ledger_completion_tokens": sum(r["completion_tokens"] for r in rows),
        "upstream_completion_tokens": sum(c for _, c in usage.values()),
        "ledger_cost_micros": ledger_cost, "upstream_priced_micros": upstream_cost,
        "failed_attempts_not_billed": dict(unbilled),
        "mismatched_requests": len(mismatched), "mismatch_examples": mismatched[:10],
        "client_ids_missing_from_ledger": len(unrecorded),
        "open_holds": len(holds),
        "open_holds_examples": [(rid, by_id[rid]["status"] if rid in by_id else "no ledger row")
                                for rid in holds[:5]],
        "ledger_stream_backlog": backlog,
        "rss_mb_per_wave": [[round(m, 1) for m in w] for w in rss],
        "rss_growth_after_warmup_mb": [round(g, 1) for g in growth],
        "rss_peak_mb": [round(p, 1) for p in peak],
    }
    print(json.dumps(figures, indent=2))
    print(f"ledger == upstream priced usage: {'yes' if exact else 'NO'} "
          f"({len(rows)} rows, {ledger_cost} vs {upstream_cost} micro-USD, "
          f"{len(mismatched)} mismatched)")
    print(f"open reservations: {len(holds)}; ledger stream backlog: {backlog}")
    print("memory flat: " + ("yes" if flat else "NO") + " (growth after warm-up "
          + ", ".join(f"{g:+.1f} MB" for g in growth) + f"; slack {RSS_SLACK_MB} MB)")
    print("SOAK " + ("PASSED" if ok else "FAILED"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
