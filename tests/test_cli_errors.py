"""Bad input files get one clear line on stderr and exit code 2, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _frugate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FRUGATE_DEBUG"}
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("files", "args", "says"), [
    ({"q.csv": "text\nhello\n"}, ["router", "score", "--in", "q.csv", "--out", "o.csv"],
     "no `prompt` column"),
    ({}, ["router", "score", "--in", "missing.csv", "--out", "o.csv"],
     "No such file or directory"),
    ({"t.csv": "prompt\nhi\n"}, ["router", "eval", "--data", "t.csv"], "missing column(s)"),
    ({"e.jsonl": '{"id": "1"}\n'},
     ["cache", "simulate", "--entries", "e.jsonl", "--queries", "e.jsonl", "--out", "r.jsonl"],
     'e.jsonl line 1: expected an object with "id", "text"'),
    ({"p.jsonl": '{"a": "x", "b": "y", "duplicate": 1}\nnot json\n'},
     ["cache", "eval", "--pairs", "p.jsonl"], "p.jsonl line 2"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, files: dict[str, str],
                                          args: list[str], says: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    done = _frugate(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and says in done.stderr
    assert "Traceback" not in done.stderr
