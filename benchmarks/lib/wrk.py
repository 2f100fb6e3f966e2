"""Running wrk (closed-loop HTTP load) with a POST body and reading its figures."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.lib.procs import pinned

LUA = Path(__file__).with_name("post.lua")
MARK = "WRK_JSON "


class WrkMissing(RuntimeError):
    """wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)."""


@dataclass(frozen=True)
class Run:
    """One wrk run. Latencies are whole-response times (the full SSE body for streams)."""

    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int  # socket errors and timeouts
    bad_status: int  # responses that were not 2xx/3xx

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.errors == 0 and self.bad_status == 0


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing("wrk is not installed: apt-get install -y wrk")
    return path


def run(url: str, body_file: Path, *, connections: int, duration_s: float,
        token: str = "", threads: int = 1, timeout_s: float = 10.0,
        cpus: Sequence[int] | None = None) -> Run:
    """POST `body_file` to `url` from `connections` keep-alive connections for `duration_s`."""
    argv = [wrk_path(), f"-t{min(threads, connections)}", f"-c{connections}",
            f"-d{max(1, round(duration_s))}s", f"--timeout={timeout_s:g}s", "-s", str(LUA),
            url, "--", str(body_file), token]
    with pinned(cpus):
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=duration_s + timeout_s + 30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
    return parse(proc.stdout)


def parse(stdout: str) -> Run:
    """Read the JSON line that post.lua's done() prints."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no {MARK.strip()} line:\n{stdout}")
    d = json.loads(line[len(MARK):])
    lat, err = d["latency_us"], d["errors"]
    return Run(requests=int(d["requests"]), duration_s=d["duration_us"] / 1e6,
               p50_ms=lat["p50"] / 1000, p90_ms=lat["p90"] / 1000, p99_ms=lat["p99"] / 1000,
               mean_ms=lat["mean"] / 1000, max_ms=lat["max"] / 1000,
               errors=err["connect"] + err["read"] + err["write"] + err["timeout"],
               bad_status=err["status"])
