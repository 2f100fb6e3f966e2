"""The measurement loop: every (stream, concurrency) cell, every target, several rounds.

Targets are measured back to back inside each cell and round (direct, then each gateway), so a
gateway's figures are always paired with a direct run taken seconds earlier under the same
machine load; the summaries take medians over rounds of those paired differences and ratios.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks.lib import wrk
from benchmarks.lib.targets import MODEL, Target

# A short realistic chat turn: system prompt + question, 16 output tokens from the upstream.
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant for an engineering team."},
    {"role": "user", "content": "In two sentences, what does a reverse proxy do, and why would "
                                "a team put one in front of its model servers?"},
]
MAX_TOKENS = 16


def write_bodies(run_dir: Path) -> dict[bool, Path]:
    """The two request bodies (stream off / on), the same bytes for every target."""
    bodies = {}
    for stream in (False, True):
        body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        path = run_dir / f"body-{'stream' if stream else 'json'}.json"
        path.write_bytes(orjson.dumps(body))
        bodies[stream] = path
    return bodies


@dataclass(frozen=True)
class Plan:
    concurrency: Sequence[int] = (1, 16, 64)
    streams: Sequence[bool] = (False, True)
    duration_s: float = 5.0
    warmup_s: float = 2.0
    rounds: int = 3
    load_cpus: Sequence[int] | None = None  # where wrk runs


@dataclass
class Cell:
    """All rounds of one (target, stream, concurrency)."""

    target: str
    stream: bool
    concurrency: int
    runs: list[wrk.Run] = field(default_factory=list)
    loadavg: list[float] = field(default_factory=list)
    extra: list[dict[str, float]] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.runs))


Probe = Callable[[Target], dict[str, float]]


def measure(targets: Sequence[Target], bodies: dict[bool, Path], plan: Plan,
            probe: Probe | None = None,
            log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[Cell]:
    """Run the plan. `probe(target)` is read before and after every run of a target and the
    difference kept in `Cell.extra` (frugate's own overhead histogram, for instance)."""
    for t in targets:  # warm-up: connection pools, lazy imports, first-request paths
        for stream in plan.streams:
            if plan.warmup_s > 0:
                wrk.run(t.url, bodies[stream], connections=16, duration_s=plan.warmup_s,
                        token=t.token, cpus=plan.load_cpus)
    cells: dict[tuple[str, bool, int], Cell] = {}
    total = plan.rounds * len(plan.streams) * len(plan.concurrency) * len(targets)
    done = 0
    for rnd in range(plan.rounds):
        for stream in plan.streams:
            for c in plan.concurrency:
                for t in targets:
                    cell = cells.setdefault((t.name, stream, c), Cell(t.name, stream, c))
                    before = probe(t) if probe else {}
                    r = wrk.run(t.url, bodies[stream], connections=c, duration_s=plan.duration_s,
                                token=t.token, cpus=plan.load_cpus)
                    after = probe(t) if probe else {}
                    cell.runs.append(r)
                    cell.loadavg.append(os.getloadavg()[0])
                    if before or after:
                        cell.extra.append({k: after.get(k, 0.0) - before.get(k, 0.0)
                                           for k in after})
                    done += 1
                    flag = "" if r.ok else f"  !! errors={r.errors} non-2xx={r.bad_status}"
                    log(f"[{done}/{total}] round {rnd + 1} {t.name:8s} "
                        f"{'stream' if stream else 'json':6s} c={c:<3d} {r.rps:8.0f} rps  "
                        f"p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms{flag}")
                    time.sleep(0.2)  # let lingering connections close between runs
    return list(cells.values())
