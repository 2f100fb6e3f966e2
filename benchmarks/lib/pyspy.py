"""Sampling a running gateway with py-spy and summarising where its CPU time goes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

# "function (path/to/file.py:123)"; the line number is dropped so a function counts once.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def pyspy_path() -> str | None:
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 200, gil: bool = True) -> Path:
    """Collapsed stacks ("frame;frame;... count" lines) of every thread of `pid`.

    `gil`: sample only threads holding the GIL, i.e. where Python CPU time goes. Without it a
    thread blocked in C (a queue, a lock, waiting for the GIL) also counts as busy."""
    exe = pyspy_path()
    if exe is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", str(rate), "--format", "raw", "--nonblocking", "--threads",
            "--output", str(out), *(["--gil"] if gil else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return out


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far per thread of `pid`, keyed "tid name" (from /proc)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            out[f"{task.name} {name}"] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
    return out


def thread_cpu_text(before: dict[str, float], after: dict[str, float], requests: int) -> str:
    used = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
    total = sum(u for u, _ in used)
    lines = [f"CPU time per thread during the profiled run ({total:.2f} s in all, "
             f"{total / max(requests, 1) * 1000:.3f} ms per request):"]
    lines += [f"  {u:7.3f} s  {k}" for u, k in used if u >= 0.005]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def _stacks(collapsed: str) -> Iterator[tuple[str, list[str], int]]:
    """(thread, frames, count); the thread is py-spy's `--threads` first frame."""
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith("thread ("):
            thread = frames[0].split(": ", 1)[-1]
            frames = frames[1:]
        yield thread, [_short(f) for f in frames], int(count)


def _package(frame: str) -> str:
    """`func (httpcore/_async/http11.py)` -> httpcore; `func (threading.py)` -> threading."""
    path = frame.rsplit(" (", 1)[-1].rstrip(")")
    first = path.split("/", 1)[0]
    return first.removesuffix(".py") if "/" not in path else first


_LOOP = ("Runner.run ", "BaseEventLoop.run_until_complete ", "BaseEventLoop.run_forever ")


def _under_loop(frames: list[str]) -> list[str]:
    """The frames below the event loop's run call (what the loop is running), else all."""
    for i in range(len(frames) - 1, -1, -1):
        if frames[i].startswith(_LOOP):
            return frames[i + 1:]
    return frames


def summary(collapsed: str, top: int = 20, thread: str = "MainThread",
            own_code: str = "gateway/") -> str:
    """Where `thread` (the event loop) spends its samples: by package and by function (own
    time: the sampled leaf), and `own_code` functions by total time (anywhere on the stack)."""
    per_thread: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for name, frames, n in _stacks(collapsed):
        per_thread[name.split(" (")[0]] += n
        if name != thread or not frames:
            continue
        samples += n
        own[frames[-1]] += n
        packages[_package(frames[-1])] += n
        for f in set(_under_loop(frames)):
            if f"({own_code}" in f:
                total[f] += n
    if samples == 0:
        return f"no samples of {thread} (was the process busy?)\n"
    out = ["Samples per thread:"]
    out += [f"  {n:6d}  {name}" for name, n in per_thread.most_common()]
    out += ["", f"{thread}: {samples} samples", "",
            "Own time by package (the package whose code was running):"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in packages.most_common(15)]
    out += ["", f"Top {top} functions by own time:"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in own.most_common(top)]
    out += ["", f"Top {top} {own_code} functions by total time (itself + what it calls; "
                "frames under the event loop only):"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in total.most_common(top)]
    return "\n".join(out) + "\n"
