"""What admission + settlement add to a request (issue 3): in-process and with Redis.

    python -m benchmarks.admission [--n 5000] [--redis redis://127.0.0.1:6379/0]

One request's accounting = `Meter.admit` (RPM/TPM windows + budget holds on key, team and
tenant: one Lua script, one round trip) + `Meter.start_settle` (hold -> actual cost + the ledger
event on the Redis Stream, written in one go). The pipeline answers the client once the
settlement is sent; Redis's reply is handled in a task. So two figures:
  - "request waits": admit + sending the settlement, what a request's latency includes;
  - "settled": until Redis confirmed the settlement (two full round trips).
Measured sequentially (latency) and with 16 concurrent requests (throughput), against the
real Redis on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.accounting.admission import Admission
from gateway.accounting.memory import MemoryAdmission
from gateway.accounting.meter import Meter
from gateway.accounting.prices import ModelPrice
from gateway.accounting.record import Record
from gateway.accounting.redis_admission import RedisAdmission
from gateway.state import connect_redis
from gateway.tenancy.directory import BudgetRule, Directory, Principal

PRICE = ModelPrice(1_000_000, 2_000_000, 1_000_000)


class _Sink:
    def add(self, record: Record) -> None:
        pass


def _meter(admission: Admission) -> tuple[Meter, Principal]:
    uid = secrets.token_hex(4)
    p = Principal(key_id=f"k{uid}", team_id=f"tm{uid}", tenant_id=f"tn{uid}", prefix="fk-x...",
                  key_rpm=10**9, key_tpm=10**12, team_rpm=10**9, team_tpm=10**12)
    d = Directory()
    for scope, sid in (("key", p.key_id), ("team", p.team_id), ("tenant", p.tenant_id)):
        d.budgets[(scope, sid)] = BudgetRule(scope, sid, 10**15, None, "day", 80)
    return Meter(admission, d, _Sink(), {"small": PRICE}, "small"), p


async def _one(meter: Meter, p: Principal) -> tuple[float, float]:
    rid = "req_" + secrets.token_hex(12)
    t0 = time.perf_counter()
    ticket = await meter.admit(p, rid, 5_000, 400)
    rec = Record(request_id=rid, ts=datetime.now(UTC), tenant_id=p.tenant_id,
                 team_id=p.team_id, key_id=p.key_id, endpoint="chat", requested_model="small",
                 pool="small", prompt_tokens=120, completion_tokens=80)
    done = meter.start_settle(ticket, rec)
    waited = time.perf_counter() - t0
    await done
    return waited, time.perf_counter() - t0


async def _measure(name: str, admission: Admission, n: int) -> dict[str, float]:
    meter, p = _meter(admission)
    for _ in range(200):
        await _one(meter, p)
    both = [await _one(meter, p) for _ in range(n)]
    t0 = time.perf_counter()

    async def worker() -> None:
        for _ in range(n // 16):
            await _one(meter, p)

    await asyncio.gather(*(worker() for _ in range(16)))
    rps = (n // 16 * 16) / (time.perf_counter() - t0)
    out = {"per_s_c16": rps}
    for i, what in enumerate(("waits", "settled")):
        lat = [b[i] for b in both]
        out[f"{what}_p50_ms"] = 1000 * statistics.median(lat)
        out[f"{what}_p99_ms"] = 1000 * statistics.quantiles(lat, n=100)[98]
    print(f"{name:8s} request waits (admit + settlement sent) p50 {out['waits_p50_ms']:.3f} ms  "
          f"p99 {out['waits_p99_ms']:.3f} ms")
    print(f"{name:8s} settled (Redis confirmed)                 p50 {out['settled_p50_ms']:.3f} ms"
          f"  p99 {out['settled_p99_ms']:.3f} ms   {rps:,.0f} requests/s at c=16")
    return out


async def _ping_floor(call: Callable[[], Awaitable[Any]], n: int) -> float:
    """p50 of one bare PING: the floor of any one-round-trip step on this machine."""
    for _ in range(200):
        await call()
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        lat.append(time.perf_counter() - t0)
    return 1000 * statistics.median(lat)


async def main_async(n: int, redis_url: str) -> int:
    await _measure("memory", MemoryAdmission(), n)
    client = connect_redis(redis_url)
    prefix = "fgbench-" + secrets.token_hex(3)
    admission = RedisAdmission(client, prefix=prefix)
    link = admission.link
    floors = [f"redis-py {await _ping_floor(client.ping, n):.3f} ms"]
    if link is not None:
        floor = await _ping_floor(lambda: link.execute(("PING",)), n)
        floors.append(f"hot-path link {floor:.3f} ms")
    print("redis    PING round trip p50: " + ", ".join(floors))
    try:
        out = await _measure("redis", admission, n)
    finally:
        await admission.close()
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    ok = out["waits_p50_ms"] <= 0.3
    print(f"  [{'ok' if ok else 'MISSED'}] Redis admission + settlement add <= 0.3 ms p50 to a "
          "request")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args(argv)
    # The gateway runs on uvloop (uvicorn's default when installed); so does this.
    return uvloop.run(main_async(args.n, args.redis))


if __name__ == "__main__":
    raise SystemExit(main())
