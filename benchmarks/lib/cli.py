"""What the gateway benchmark scripts share: options, CPU layout, run directory, metadata."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.lib import pyspy, wrk
from benchmarks.lib.matrix import Cell, Plan
from benchmarks.lib.procs import REPO_ROOT, available_cpus
from benchmarks.lib.targets import Target


def add_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--concurrency", default="1,16,64",
                    help="comma-separated wrk connection counts (default: 1,16,64)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run (default: 5)")
    ap.add_argument("--warmup", type=float, default=2.0,
                    help="seconds of discarded load per target and mode first (default: 2)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs of every cell; figures are medians (default: 3)")
    ap.add_argument("--stream", choices=["both", "no", "yes"], default="both")
    ap.add_argument("--upstream", choices=["fixed", "sim"], default="fixed",
                    help="fixed: benchmarks/lib/upstream.py (default); sim: the vLLM simulator")
    ap.add_argument("--tokens", type=int, default=16, help="completion tokens per answer")
    ap.add_argument("--sim-profile", default="fast",
                    help="simulator profile with --upstream sim (e.g. realistic-small: the "
                         "gateway in front of a model server with real latencies)")
    ap.add_argument("--gateway-cpus", default=None,
                    help="CPUs for the gateway(s), e.g. 0 (default: the first CPU)")
    ap.add_argument("--load-cpus", default=None,
                    help="CPUs for wrk and the upstream (default: the other CPUs)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    ap.add_argument("--redis", default=None, metavar="URL",
                    help="frugate keeps admission, settlement and the ledger stream in this "
                         "Redis (default: in-process)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--profile", type=Path, default=None,
                    help="py-spy the gateway during one extra non-stream run; "
                         "write the top-20 summary here")
    ap.add_argument("--profile-concurrency", type=int, default=16,
                    help="wrk connections of the profiled run (default: 16)")
    ap.add_argument("--run-dir", type=Path, default=None,
                    help="keep configs, logs and the SQLite DB here (default: a temp dir)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke mode: c=1,4, 1 s runs, 1 round, no warm-up")


@dataclass(frozen=True)
class Layout:
    gateway: list[int] | None
    load: list[int] | None

    def describe(self) -> str:
        if self.gateway is None:
            return "not pinned"
        return (f"gateway(s) on CPU {','.join(map(str, self.gateway))}; wrk + upstream on CPU "
                f"{','.join(map(str, self.load or []))}")


def _cpus(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def layout(args: argparse.Namespace) -> Layout:
    cpus = available_cpus()
    if args.no_pin or len(cpus) < 2:
        return Layout(None, None)
    gateway = _cpus(args.gateway_cpus) if args.gateway_cpus else cpus[:1]
    load = _cpus(args.load_cpus) if args.load_cpus else [c for c in cpus if c not in gateway]
    return Layout(gateway, load)


def plan(args: argparse.Namespace, lay: Layout) -> Plan:
    streams = {"both": (False, True), "no": (False,), "yes": (True,)}[args.stream]
    if args.quick:
        return Plan(concurrency=(1, 4), streams=streams, duration_s=1, warmup_s=0, rounds=1,
                    load_cpus=lay.load)
    return Plan(concurrency=tuple(_cpus(args.concurrency)), streams=streams,
                duration_s=args.duration, warmup_s=args.warmup, rounds=args.rounds,
                load_cpus=lay.load)


@contextlib.contextmanager
def run_dir(explicit: Path | None) -> Iterator[Path]:
    if explicit is not None:
        explicit.mkdir(parents=True, exist_ok=True)
        yield explicit
        return
    path = Path(tempfile.mkdtemp(prefix="frugate-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def closing_all() -> Iterator[list[Target]]:
    """Targets appended to the yielded list are closed, last first, on the way out."""
    started: list[Target] = []
    try:
        yield started
    finally:
        for t in reversed(started):
            with contextlib.suppress(Exception):
                t.close()


def profile_gateway(target: Target, bodies: dict[bool, Path], p: Plan, out: Path,
                    run_dir_: Path, connections: int = 16) -> str:
    """One extra non-stream run with py-spy attached; writes and returns the summary."""
    import threading

    assert target.pid is not None
    seconds = max(p.duration_s, 5.0)
    raw = run_dir_ / "pyspy.txt"
    result: dict[str, Any] = {}

    def load() -> None:
        result["run"] = wrk.run(target.url, bodies[False], connections=connections,
                                duration_s=seconds + 2, token=target.token, cpus=p.load_cpus)

    th = threading.Thread(target=load)
    th.start()
    time.sleep(1.0)  # sample the steady state, not wrk's connection set-up
    before = pyspy.thread_cpu(target.pid)
    try:
        pyspy.record(target.pid, seconds, raw)
    finally:
        after = pyspy.thread_cpu(target.pid)
        th.join()
    r: wrk.Run = result["run"]
    head = (f"py-spy record --rate 200 --nonblocking --threads --gil on {target.name} "
            f"(pid {target.pid}) for {seconds:.0f} s during wrk -t1 -c{connections} non-stream "
            f"({seconds + 2:.0f} s: {r.rps:,.0f} rps, p50 {r.p50_ms:.2f} ms, "
            f"p99 {r.p99_ms:.2f} ms); 1-min load average {os.getloadavg()[0]:.2f}\n"
            "py-spy samples wall-clock time: --gil keeps the samples where a thread holds the "
            "GIL, but on a loaded machine a thread preempted while holding it (e.g. right "
            "after waking another thread) still counts. CPU time per thread below is exact.\n\n")
    text = (head + pyspy.thread_cpu_text(before, after, round(r.rps * seconds)) + "\n"
            + pyspy.summary(raw.read_text()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def meta(args: argparse.Namespace, lay: Layout, p: Plan, load_before: tuple[float, ...],
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    def cmd(argv: list[str], any_status: bool = False) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, timeout=10,
                                 check=False)
            if out.returncode != 0 and not any_status:
                return "?"
            text = (out.stdout or out.stderr).strip()  # wrk --version writes to stderr
            return text.splitlines()[0] if text else ""
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    revision = cmd(["git", "rev-parse", "--short", "HEAD"])
    if revision != "?":
        dirty = cmd(["git", "status", "--porcelain", "--untracked-files=no"]) not in ("", "?")
        revision += "+dirty" if dirty else ""
    else:  # an exported tree (git archive): the exporter says which commit it is
        revision = os.environ.get("BENCH_GIT_REVISION", "?")
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "-m", _module_name(), *sys.argv[1:]]),
        "git": revision,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
        "wrk": cmd(["wrk", "--version"], any_status=True),  # exits 1 after printing it
        "upstream": args.upstream,
        "pinning": lay.describe(),
        "plan": {"concurrency": list(p.concurrency), "streams": list(p.streams),
                 "duration_s": p.duration_s, "warmup_s": p.warmup_s, "rounds": p.rounds},
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        **(extra or {}),
    }


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).as_posix()


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))


def loads_line(cells: list[Cell]) -> str:
    loads = [x for c in cells for x in c.loadavg]
    return f"1-min load average during the runs: min {min(loads):.2f}, max {max(loads):.2f}" \
        if loads else ""


__all__ = ["Layout", "add_options", "closing_all", "layout", "loads_line", "meta", "plan",
           "profile_gateway", "run_dir", "write_json"]
