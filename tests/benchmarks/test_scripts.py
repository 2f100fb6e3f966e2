"""The benchmark scripts run end to end in --quick mode (they start frugate: tens of seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.lib import wrk
from benchmarks.lib.procs import REPO_ROOT
from benchmarks.lib.targets import litellm_version

pytestmark = pytest.mark.slow


def _need_wrk() -> None:
    try:
        wrk.wrk_path()
    except wrk.WrkMissing:
        pytest.skip("wrk is not installed")


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, "--quick", "--stream", "no", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          check=False)


def test_gateway_overhead_quick(tmp_path: Path) -> None:
    _need_wrk()
    out = _run("benchmarks.gateway_overhead", "--json", str(tmp_path / "o.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads((tmp_path / "o.json").read_text())
    rows = {(r["target"], r["concurrency"]): r for r in data["rows"]}
    assert set(rows) == {("direct", 1), ("frugate", 1), ("direct", 4), ("frugate", 4)}
    gw = rows[("frugate", 4)]
    assert gw["ok"] and gw["rps"] > 0 and gw["added_p50_ms"] is not None
    assert gw["cpu_ms_per_req"] > 0 and gw["self_overhead_ms"] is not None
    assert "| frugate | no | 4 |" in out.stdout
    assert data["meta"]["loadavg_before"]


def test_litellm_compare_without_litellm_still_measures_frugate(tmp_path: Path) -> None:
    _need_wrk()
    out = _run("benchmarks.litellm_compare", "--concurrency", "1",
               "--litellm-venv", str(tmp_path / "no-venv"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "LiteLLM UNAVAILABLE" in out.stdout and "no LiteLLM venv" in out.stdout
    assert "| frugate | no | 1 |" in out.stdout


def test_litellm_compare_with_litellm(tmp_path: Path) -> None:
    _need_wrk()
    try:
        litellm_version()
    except Exception as exc:
        pytest.skip(str(exc))
    out = _run("benchmarks.litellm_compare", "--json", str(tmp_path / "c.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    litellm = [r for r in rows if r["target"] == "litellm"]
    assert len(litellm) == 2 and all(r["ok"] and r["rps"] > 0 for r in litellm)
    assert "RPS frugate/litellm" in out.stdout


def test_spec_balancing_measures_the_replicas(tmp_path: Path) -> None:
    """Every pool's requests reach a simulated replica (64 tokens at ~25 ms each, ~0.4 s at
    best with speculation), never a cache replay or an error."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.spec_balancing", "--loads", "2",
                          "--duration", "3", "--json", str(tmp_path / "s.json")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                         check=False)
    assert out.returncode in (0, 1), out.stdout + out.stderr  # 1: aware missed (noise at c=2)
    cells = {r["pool"]: r for r in json.loads((tmp_path / "s.json").read_text())}
    assert set(cells) == {"spec-only", "plain-only", "blind", "aware"}
    for pool, r in cells.items():
        assert r["errors"] == 0 and r["requests"] > 0, (pool, r)
        assert r["p50_ms"] > 300, (pool, r)
    # The plain replicas decode every token themselves: slower than the speculating ones.
    assert cells["plain-only"]["p50_ms"] > cells["spec-only"]["p50_ms"]
