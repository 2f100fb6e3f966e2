"""Parsing wrk's output, pairing rounds into added latency and ratios, py-spy summaries."""

from __future__ import annotations

import pytest

from benchmarks.lib import pyspy, report, wrk
from benchmarks.lib.matrix import Cell


def run(rps: float, p50: float, p99: float, bad: int = 0) -> wrk.Run:
    return wrk.Run(requests=int(rps * 2), duration_s=2.0, p50_ms=p50, p90_ms=p99, p99_ms=p99,
                   mean_ms=p50, max_ms=p99, errors=0, bad_status=bad)


def test_parse_reads_the_lua_json_line() -> None:
    out = ("Running 1s test\n  ...\nWRK_JSON {\"duration_us\": 2000000, \"requests\": 500, "
           "\"bytes\": 1, \"errors\": {\"connect\": 0, \"read\": 1, \"write\": 0, \"status\": 3, "
           "\"timeout\": 2}, \"latency_us\": {\"min\": 10, \"mean\": 1500.5, \"p50\": 1200, "
           "\"p90\": 2000, \"p99\": 4500, \"max\": 9000}}\n")
    r = wrk.parse(out)
    assert r.rps == 250
    assert (r.p50_ms, r.p99_ms, r.max_ms) == (1.2, 4.5, 9.0)
    assert (r.errors, r.bad_status) == (3, 3)
    assert not r.ok
    with pytest.raises(RuntimeError):
        wrk.parse("no marker here")


def test_added_latency_is_paired_per_round() -> None:
    direct = Cell("direct", False, 16, [run(1000, 1.0, 2.0), run(500, 9.0, 20.0),
                                        run(1000, 1.0, 2.0)])
    gw = Cell("frugate", False, 16, [run(100, 2.0, 5.0), run(100, 10.0, 30.0),
                                     run(50, 3.0, 4.0)],
              extra=[{"cpu_s": 0.4}, {"cpu_s": 0.2}, {"cpu_s": 0.1}])
    rows = {r.target: r for r in report.summarize([direct, gw])}
    g = rows["frugate"]
    # Per-round differences 1, 1, 2 -> median 1; a median of each side would give 3 - 1 = 2.
    assert g.added_p50_ms == pytest.approx(1.0)
    assert g.added_p99_ms == pytest.approx(3.0)  # differences 3, 10, 2
    assert g.rps_ratio == pytest.approx(0.1)  # ratios 0.1, 0.2, 0.05
    assert g.cpu_ms_per_req == pytest.approx(1.0)  # 0.4/200, 0.2/200, 0.1/100 s per request
    assert rows["direct"].added_p50_ms is None
    assert g.ok


def test_errors_mark_the_row_and_targets_are_judged() -> None:
    cells = [Cell("direct", False, 1, [run(5000, 0.1, 0.2)]),
             Cell("frugate", False, 1, [run(800, 0.9, 3.0, bad=1)]),
             Cell("direct", False, 16, [run(9000, 0.5, 1.0)]),
             Cell("frugate", False, 16, [run(1200, 2.0, 7.0)])]
    rows = report.summarize(cells)
    assert not next(r for r in rows if r.target == "frugate" and r.concurrency == 1).ok
    met = {desc.split(" <=")[0].split(" >=")[0]: ok for desc, _v, ok in report.targets(rows)}
    assert met == {"added p50 at c=1": True, "added p99 at c=16": False,
                   "non-streaming RPS": True}
    table = report.table(rows)
    assert "frugate (ERRORS)" in table and "+0.80" in table


def test_pyspy_summary_counts_own_package_and_total_per_thread() -> None:
    collapsed = (
        "thread (1): MainThread;main (gateway/cli.py:1);Runner.run (asyncio/runners.py:2);"
        "handle (gateway/x.py:3) 5\n"
        "thread (1): MainThread;main (gateway/cli.py:1);Runner.run (asyncio/runners.py:2);"
        "handle (gateway/x.py:4);send (httpx/_client.py:9) 3\n"
        "thread (1): MainThread;main (gateway/cli.py:1);Runner.run (asyncio/runners.py:2);"
        "tick (asyncio/y.py:7) 2\n"
        "thread (2): Thread-1;worker (b.py:1) 50\n")
    text = pyspy.summary(collapsed, top=5)
    assert "MainThread: 10 samples" in text
    by_package = text.split("by package")[1].split("Top")[0]
    assert "50.0%  gateway" in by_package and "30.0%  httpx" in by_package
    assert "20.0%  asyncio" in by_package
    own = text.split("functions by own time")[1].split("Top")[0]
    assert "50.0%  handle (gateway/x.py)" in own  # lines 3 and 4 count as one function
    total = text.split("by total time")[1]
    assert "80.0%  handle (gateway/x.py)" in total
    assert "main (gateway/cli.py)" not in total  # above the event loop: left out
    assert "worker" not in own and "50  Thread-1" in text
