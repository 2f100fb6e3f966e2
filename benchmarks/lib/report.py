"""Summaries of measured cells: medians, paired added latency, ratios, tables and JSON."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.lib.matrix import Cell

DIRECT = "direct"


@dataclass(frozen=True)
class Row:
    target: str
    stream: bool
    concurrency: int
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    ok: bool  # no socket errors and no non-2xx in any round
    added_p50_ms: float | None = None  # vs direct, median of per-round differences
    added_p99_ms: float | None = None
    rps_ratio: float | None = None  # vs direct, median of per-round ratios
    self_overhead_ms: float | None = None  # frugate's own x-frugate-overhead-ms mean
    cpu_ms_per_req: float | None = None  # CPU time of the target's process per request


def _paired(a: Cell, b: Cell, attr: str, ratio: bool = False) -> float:
    values: list[float] = []
    for x, y in zip(a.runs, b.runs, strict=False):
        xv, yv = float(getattr(x, attr)), float(getattr(y, attr))
        values.append((xv / yv if yv else 0.0) if ratio else xv - yv)
    return statistics.median(values)


def summarize(cells: Sequence[Cell]) -> list[Row]:
    by_key = {(c.target, c.stream, c.concurrency): c for c in cells}
    rows = []
    for c in cells:
        direct = by_key.get((DIRECT, c.stream, c.concurrency))
        paired = direct is not None and c.target != DIRECT
        overhead = None
        sums = [e for e in c.extra if e.get("overhead_count")]
        if sums:
            overhead = statistics.median(e["overhead_sum_s"] / e["overhead_count"] * 1000
                                         for e in sums)
        cpu = [e["cpu_s"] / r.requests * 1000 for e, r in zip(c.extra, c.runs, strict=False)
               if "cpu_s" in e and r.requests]
        rows.append(Row(
            target=c.target, stream=c.stream, concurrency=c.concurrency, rounds=len(c.runs),
            rps=c.median("rps"), p50_ms=c.median("p50_ms"), p99_ms=c.median("p99_ms"),
            ok=all(r.ok for r in c.runs),
            added_p50_ms=_paired(c, direct, "p50_ms") if paired and direct else None,
            added_p99_ms=_paired(c, direct, "p99_ms") if paired and direct else None,
            rps_ratio=_paired(c, direct, "rps", ratio=True) if paired and direct else None,
            self_overhead_ms=overhead,
            cpu_ms_per_req=statistics.median(cpu) if cpu else None))
    order = {name: i for i, name in enumerate(dict.fromkeys(c.target for c in cells))}
    rows.sort(key=lambda r: (r.stream, r.concurrency, order[r.target]))
    return rows


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(rows: Sequence[Row]) -> str:
    """Markdown table: paste-able into docs/benchmarks.md."""
    has_self = any(r.self_overhead_ms is not None for r in rows)
    head = ["path", "stream", "c", "RPS", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms",
            "RPS ratio", "CPU ms/req"] + (["own overhead ms"] if has_self else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cols = [r.target + ("" if r.ok else " (ERRORS)"), "yes" if r.stream else "no",
                str(r.concurrency), f"{r.rps:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
                _f(r.added_p50_ms, "+.2f"), _f(r.added_p99_ms, "+.2f"), _f(r.rps_ratio, ".3f"),
                _f(r.cpu_ms_per_req, ".3f")]
        if has_self:
            cols.append(_f(r.self_overhead_ms, ".3f"))
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def versus(rows: Sequence[Row], cells: Sequence[Cell], a: str, b: str) -> str:
    """`a` against `b` per (stream, c): throughput ratio and each one's added latency."""
    by_row = {(r.target, r.stream, r.concurrency): r for r in rows}
    by_cell = {(c.target, c.stream, c.concurrency): c for c in cells}
    head = ["stream", "c", f"{a} RPS", f"{b} RPS", f"RPS {a}/{b}", f"{a} +p50 ms",
            f"{b} +p50 ms", f"{a} +p99 ms", f"{b} +p99 ms", f"CPU/req {b}/{a}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (target, stream, c), ra in by_row.items():
        rb = by_row.get((b, stream, c))
        if target != a or rb is None:
            continue
        ratio = _paired(by_cell[(a, stream, c)], by_cell[(b, stream, c)], "rps", ratio=True)
        lines.append("| " + " | ".join([
            "yes" if stream else "no", str(c), f"{ra.rps:,.0f}", f"{rb.rps:,.0f}",
            f"{ratio:.1f}x", _f(ra.added_p50_ms, "+.2f"), _f(rb.added_p50_ms, "+.2f"),
            _f(ra.added_p99_ms, "+.2f"), _f(rb.added_p99_ms, "+.2f"),
            f"{rb.cpu_ms_per_req / ra.cpu_ms_per_req:.1f}x"
            if ra.cpu_ms_per_req and rb.cpu_ms_per_req else "-"]) + " |")
    return "\n".join(lines)


# The targets for one gateway process on the 2-core machine.
TARGET_ADDED_P50_C1_MS = 1.0
TARGET_ADDED_P99_C16_MS = 5.0
TARGET_RPS = 1000.0


def targets(rows: Sequence[Row], name: str = "frugate") -> list[tuple[str, float | None, bool]]:
    """(description, measured, met) for each target, non-streaming figures."""
    get = {(r.stream, r.concurrency): r for r in rows if r.target == name}
    out: list[tuple[str, float | None, bool]] = []
    c1, c16 = get.get((False, 1)), get.get((False, 16))
    if c1 is not None and c1.added_p50_ms is not None:
        out.append((f"added p50 at c=1 <= {TARGET_ADDED_P50_C1_MS:g} ms", c1.added_p50_ms,
                    c1.added_p50_ms <= TARGET_ADDED_P50_C1_MS))
    if c16 is not None and c16.added_p99_ms is not None:
        out.append((f"added p99 at c=16 <= {TARGET_ADDED_P99_C16_MS:g} ms", c16.added_p99_ms,
                    c16.added_p99_ms <= TARGET_ADDED_P99_C16_MS))
    best = max((r.rps for (stream, _c), r in get.items() if not stream), default=None)
    if best is not None:
        out.append((f"non-streaming RPS >= {TARGET_RPS:,.0f} (best c)", best, best >= TARGET_RPS))
    return out


def targets_text(rows: Sequence[Row], name: str = "frugate") -> str:
    lines = [f"  [{'met' if met else 'MISSED'}] {desc}: {_f(v, '.2f')}"
             for desc, v, met in targets(rows, name)]
    cpu = [r.cpu_ms_per_req for r in rows
           if r.target == name and not r.stream and r.cpu_ms_per_req]
    if cpu:
        best = min(cpu)
        lines.append(f"  [info] CPU per non-stream request: {best:.3f} ms at best, i.e. at most "
                     f"~{1000 / best:,.0f} RPS on one fully free core")
    return "\n".join(lines)


def from_json(data: dict[str, Any]) -> list[Cell]:
    """The cells of a file written with `--json` (to print its tables again)."""
    from benchmarks.lib.wrk import Run

    fields = set(Run.__dataclass_fields__)
    return [Cell(c["target"], c["stream"], c["concurrency"],
                 [Run(**{k: v for k, v in r.items() if k in fields}) for r in c["runs"]],
                 c["loadavg_1m"], c["extra"]) for c in data["runs"]]


def as_json(rows: Sequence[Row], cells: Sequence[Cell], meta: dict[str, Any]) -> dict[str, Any]:
    return {"meta": meta, "rows": [asdict(r) for r in rows],
            "runs": [{"target": c.target, "stream": c.stream, "concurrency": c.concurrency,
                      "loadavg_1m": c.loadavg, "extra": c.extra,
                      "runs": [{**asdict(r), "rps": r.rps} for r in c.runs]} for c in cells]}


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks.lib.report RUN.json`: print a saved run's tables again."""
    import json
    import sys

    path = (sys.argv[1:] if argv is None else argv)[0]
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    cells = from_json(data)
    rows = summarize(cells)
    meta = data.get("meta", {})
    print(f"{meta.get('command', '?')}\ngit {meta.get('git', '?')}, {meta.get('date', '?')}, "
          f"{meta.get('pinning', '?')}; load average before "
          f"{', '.join(f'{x:.2f}' for x in meta.get('loadavg_before', []))}\n")
    print(table(rows))
    names = {c.target for c in cells}
    if {"frugate", "litellm"} <= names:
        print("\n" + versus(rows, cells, "frugate", "litellm"))
    if "frugate" in names:
        print("\nTargets (frugate, non-streaming):\n" + targets_text(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
