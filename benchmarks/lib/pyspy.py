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


def summary(collapsed: str, top: int = 20, thread: str = "MainThread") -> str:
    """Top functions of `thread` (the event loop) by own time (the sampled leaf) and by total
    time (anywhere on the stack), after a count of samples per thread."""
    per_thread: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for name, frames, n in _stacks(collapsed):
        per_thread[name.split(" (")[0]] += n
        if name != thread or not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    if samples == 0:
        return f"no samples of {thread} (was the process busy?)\n"
    out = ["Samples per thread (py-spy counts a thread blocked in C as busy, so read the "
           "per-thread CPU time above for where CPU goes):"]
    out += [f"  {n:6d}  {name}" for name, n in per_thread.most_common()]
    out += ["", f"{thread}: {samples} samples", "",
            f"Top {top} by own time (the function itself was running):"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in own.most_common(top)]
    # Frames on (nearly) every stack are the process's spine (main, uvicorn, the loop): skip.
    spine = [name for name, n in total.items() if n >= 0.9 * samples]
    inner = [(name, n) for name, n in total.most_common() if name not in spine][:top]
    out += ["", f"Top {top} by total time (the function or something it called), leaving out "
                f"{len(spine)} frames that are on >= 90% of stacks (main, server, event loop):"]
    out += [f"  {n / samples:6.1%}  {name}" for name, n in inner]
    return "\n".join(out) + "\n"
