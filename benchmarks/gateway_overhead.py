"""The latency and throughput frugate adds on top of its upstream (issue 2's acceptance figures).

    python -m benchmarks.gateway_overhead [--rounds 3] [--duration 5] [--json out.json]
                                          [--profile docs/benchmarks-profile.txt] [--quick]

Starts a zero-latency upstream (benchmarks/lib/upstream.py, or `--upstream sim` for the vLLM
simulator) and one `frugate serve` process in front of it with auth, RPM/TPM limits, budgets and
the ledger on (benchmarks/configs/frugate-bench.yaml), then drives both with wrk at concurrency
1, 16 and 64, non-streaming and streaming, the same request bytes to both. Each cell runs
direct-then-gateway back to back, `--rounds` times; the table gives medians:
    +p50 / +p99   gateway latency minus direct latency (paired per round)
    RPS ratio     gateway RPS / direct RPS
    own overhead  frugate's x-frugate-overhead-ms (mean, from its /metrics)
and checks the issue's targets (one process, 2 cores): +p50 <= 1 ms at c=1, +p99 <= 5 ms at
c=16, >= 1,000 RPS non-streaming. CPU pinning (default on 2+ CPUs): the gateway on the first
CPU, wrk and the upstream on the others. Needs wrk (apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `benchmarks.lib` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.lib import cli, report, wrk
from benchmarks.lib.matrix import measure, write_bodies
from benchmarks.lib.targets import probe, start_frugate, start_upstream


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_options(ap)
    args = ap.parse_args(argv)
    try:
        wrk.wrk_path()
    except wrk.WrkMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lay = cli.layout(args)
    p = cli.plan(args, lay)
    load_before = os.getloadavg()
    print(f"pinning: {lay.describe()}; load average {load_before[0]:.2f}", file=sys.stderr)
    with cli.run_dir(args.run_dir) as rd, cli.closing_all() as started:
        bodies = write_bodies(rd)
        upstream = start_upstream(args.upstream, rd, lay.load, args.tokens, args.sim_profile)
        started.append(upstream)
        print("starting frugate ...", file=sys.stderr)
        gateway = start_frugate(rd, upstream.base, lay.gateway, args.redis)
        started.append(gateway)
        cells = measure([upstream, gateway], bodies, p, probe=probe)
        profile_text = None
        if args.profile is not None:
            profile_text = cli.profile_gateway(gateway, bodies, p, args.profile, rd,
                                               args.profile_concurrency)
    rows = report.summarize(cells)
    print(f"\nfrugate vs direct ({args.upstream} upstream, {args.tokens} output tokens), "
          f"medians of {p.rounds} round(s) x {p.duration_s:g} s; {lay.describe()}")
    print(cli.loads_line(cells) + "\n")
    print(report.table(rows))
    print("\nTargets (one gateway process, non-streaming):")
    print(report.targets_text(rows))
    if profile_text is not None:
        print(f"\npy-spy summary written to {args.profile}")
    if args.json is not None:
        cli.write_json(args.json, report.as_json(rows, cells, cli.meta(args, lay, p, load_before)))
        print(f"figures written to {args.json}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
