"""frugate and LiteLLM proxy side by side, against the same upstream, in one run (issue 9).

    python -m benchmarks.litellm_compare [--rounds 3] [--duration 5] [--json out.json] [--quick]

Starts one upstream (benchmarks/lib/upstream.py, or `--upstream sim`), one `frugate serve` in
front of it with auth, RPM/TPM limits, budgets and the ledger on, and LiteLLM proxy from its own
venv (.venv-litellm, never a frugate dependency; `--litellm-venv` to point elsewhere) with one
model `openai/bench` -> the same upstream and a master key, using its defaults otherwise (no
database, so no virtual keys, budgets or spend logs: LiteLLM needs PostgreSQL + Prisma for
those). Then wrk drives direct, frugate and LiteLLM in turn in every (stream, c) cell, the same
request bytes to all three, `--rounds` times, and prints each gateway's RPS, p50/p99, added
p50/p99 vs direct and the frugate/LiteLLM throughput ratio. If LiteLLM is missing or will not
start, the script says so and still measures frugate.

Install LiteLLM (once): python3 -m venv .venv-litellm &&
    .venv-litellm/bin/pip install -r benchmarks/lib/litellm-requirements.txt
(litellm 1.110.2 with its proxy extras; see that file and docs/benchmarks.md for why not simply
'litellm[proxy]' on this machine)
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
from benchmarks.lib.targets import (
    LITELLM_VENV,
    Target,
    Unavailable,
    litellm_version,
    probe,
    start_frugate,
    start_litellm,
    start_upstream,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_options(ap)
    ap.add_argument("--litellm-venv", type=Path, default=LITELLM_VENV,
                    help=f"the venv LiteLLM is installed in (default: {LITELLM_VENV})")
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
    litellm_note = ""
    with cli.run_dir(args.run_dir) as rd, cli.closing_all() as started:
        bodies = write_bodies(rd)
        upstream = start_upstream(args.upstream, rd, lay.load, args.tokens, args.sim_profile)
        started.append(upstream)
        print("starting frugate ...", file=sys.stderr)
        frugate = start_frugate(rd, upstream.base, lay.gateway)
        started.append(frugate)
        gateways: list[Target] = [frugate]
        try:
            version = litellm_version(args.litellm_venv)
            print(f"starting LiteLLM {version} ...", file=sys.stderr)
            litellm = start_litellm(rd, upstream.base, lay.gateway, args.litellm_venv)
            started.append(litellm)
            gateways.append(litellm)
            litellm_note = f"LiteLLM {version} (uvicorn, 1 worker, master key, no database)"
        except (Unavailable, RuntimeError, TimeoutError) as exc:
            litellm_note = f"LiteLLM UNAVAILABLE, frugate measured alone: {exc}"
            print(f"\n!! {litellm_note}\n", file=sys.stderr)
        cells = measure([upstream, *gateways], bodies, p, probe=probe)
        if args.profile is not None:
            cli.profile_gateway(frugate, bodies, p, args.profile, rd)
    rows = report.summarize(cells)
    print(f"\nfrugate and LiteLLM vs direct ({args.upstream} upstream, {args.tokens} output "
          f"tokens), medians of {p.rounds} round(s) x {p.duration_s:g} s; {lay.describe()}")
    print(f"frugate: auth + RPM/TPM limits + budgets (key, team, tenant) + ledger; {litellm_note}")
    print(cli.loads_line(cells) + "\n")
    print(report.table(rows))
    if len(gateways) > 1:
        print("\nfrugate vs LiteLLM:\n")
        print(report.versus(rows, cells, "frugate", "litellm"))
    print("\nTargets (frugate, one process, non-streaming):")
    print(report.targets_text(rows))
    if args.json is not None:
        meta = cli.meta(args, lay, p, load_before, {"litellm": litellm_note})
        cli.write_json(args.json, report.as_json(rows, cells, meta))
        print(f"figures written to {args.json}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
