"""The things a benchmark sends load to: the upstream itself, frugate, LiteLLM proxy.

Each `start_*` returns a `Target`: the chat-completions URL, the bearer token to send and the
process behind it (for py-spy), stopped by `close()`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from benchmarks.lib.procs import REPO_ROOT, Proc, free_port, pinned, python_module

FRUGATE_CONFIG = REPO_ROOT / "benchmarks" / "configs" / "frugate-bench.yaml"
LITELLM_VENV = REPO_ROOT / ".venv-litellm"
MODEL = "bench"
# Limits high enough never to refuse a benchmark request, low enough to be real checks.
KEY_RPM, KEY_TPM = 10_000_000, 2_000_000_000
BUDGET_USD = Decimal(100_000)


@dataclass
class Target:
    name: str
    url: str  # POST here
    base: str = ""  # scheme://host:port
    token: str = ""
    pid: int | None = None
    close: Callable[[], None] = lambda: None


class Unavailable(RuntimeError):
    """A target that cannot run on this machine (the message says why)."""


def start_upstream(kind: str, run_dir: Path, cpus: Sequence[int] | None,
                   tokens: int, sim_profile: str = "fast") -> Target:
    """`fixed`: benchmarks/lib/upstream.py; `sim`: the vLLM simulator (`sim_profile`)."""
    if kind == "fixed":
        port = free_port()
        proc = Proc("upstream", python_module("benchmarks.lib.upstream", "--port", str(port),
                                              "--tokens", str(tokens), "--model", MODEL),
                    run_dir / "upstream.log", cpus=cpus)
        base = f"http://127.0.0.1:{port}"
        proc.wait_http(base + "/health", 30)
        return Target("direct", base + "/v1/chat/completions", base, pid=proc.pid,
                      close=proc.stop)
    if kind == "sim":
        from workers.sim.process import SimServer

        sim = SimServer(model=MODEL, profile=sim_profile, output_tokens=(tokens, tokens),
                        seed=1)
        with pinned(cpus):
            sim.start()
        pid = sim.process.pid if sim.process is not None else None
        return Target("direct", sim.base_url + "/chat/completions", sim.url, pid=pid,
                      close=sim.close)
    raise ValueError(f"unknown upstream {kind!r} (fixed | sim)")


def start_frugate(run_dir: Path, upstream_base: str, cpus: Sequence[int] | None,
                  redis_url: str | None = None) -> Target:
    """`frugate serve` (uvicorn + uvloop + httptools, one process) with auth, budgets, ledger;
    with `redis_url`, admission, settlement and the ledger stream live in that Redis."""
    data_dir = run_dir / "frugate-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    prefix = "fgbench-" + secrets.token_hex(3)
    env = {"BENCH_DATA_DIR": str(data_dir), "BENCH_UPSTREAM_URL": upstream_base,
           "BENCH_REDIS_URL": redis_url or "", "BENCH_REDIS_PREFIX": prefix}
    key = asyncio.run(_make_key(env))
    port = free_port()
    proc = Proc("frugate", python_module("gateway.cli", "serve", "--config", str(FRUGATE_CONFIG),
                                         "--port", str(port)),
                run_dir / "frugate.log", cpus=cpus, env=env)
    base = f"http://127.0.0.1:{port}"
    proc.wait_http(base + "/readyz", 300)

    def close() -> None:
        proc.stop()
        if redis_url:  # budget counters would stay for their period + 40 days
            import redis

            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()

    return Target("frugate", base + "/v1/chat/completions", base, token=key, pid=proc.pid,
                  close=close)


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid` so far (ns precision, from /proc/<pid>/task/*/schedstat).

    Under a loaded machine wall-clock latency mostly measures the scheduler; the CPU a
    gateway burns per request does not, which makes it the steadier figure to compare."""
    total = 0
    task_dir = Path(f"/proc/{pid}/task")
    for task in task_dir.iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return total / 1e9


def probe(target: Target) -> dict[str, float]:
    """Counters read before and after every run (see benchmarks.lib.matrix.measure)."""
    out = frugate_overhead(target)
    if target.pid is not None and Path(f"/proc/{target.pid}").exists():
        out["cpu_s"] = cpu_seconds(target.pid)
    return out


def frugate_overhead(target: Target) -> dict[str, float]:
    """frugate's own overhead histogram (sum, count) for chat, read from /metrics."""
    if target.name != "frugate":
        return {}
    with urllib.request.urlopen(target.base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        for suffix, key in (("_sum", "overhead_sum_s"), ("_count", "overhead_count")):
            if line.startswith(f'frugate_overhead_seconds{suffix}{{endpoint="chat"}}'):
                out[key] = float(line.rsplit(" ", 1)[1])
    return out


async def _make_key(env: dict[str, str]) -> str:
    """Tenant, team and key with RPM/TPM limits and monthly budgets on all three scopes."""
    from gateway.config import load_settings
    from gateway.storage import connect, create_schema
    from gateway.tenancy import admin

    settings = load_settings(FRUGATE_CONFIG, env={**os.environ, **env})
    engine, sessions = connect(settings.sqlalchemy_url)
    try:
        await create_schema(engine)
        async with sessions() as s, s.begin():
            team = await admin.find_team(s, "bench", "bench")
            if team is None:
                tenant = await admin.create_tenant(s, "bench")
                team = await admin.create_team(s, tenant.id, "bench", rpm=KEY_RPM, tpm=KEY_TPM)
            new = await admin.create_key(s, team.id, name="bench", rpm=KEY_RPM, tpm=KEY_TPM)
            for scope, ident in (("key", new.row.id), ("team", team.id),
                                 ("tenant", team.tenant_id)):
                await admin.set_budget(s, scope, ident, limit_usd=BUDGET_USD, limit_tokens=None,
                                       period="month", soft_limit_pct=None, webhook_url=None)
        return new.plaintext
    finally:
        await engine.dispose()


LITELLM_MASTER_KEY = "sk-bench-master"


def litellm_python(venv: Path = LITELLM_VENV) -> Path:
    return venv / "bin" / "python"


def litellm_version(venv: Path = LITELLM_VENV) -> str:
    """The installed LiteLLM version, or raise Unavailable saying how to install it."""
    import subprocess

    py = litellm_python(venv)
    if not py.exists():
        raise Unavailable(
            f"no LiteLLM venv at {venv}: python3 -m venv {venv} && {venv}/bin/pip install "
            "-r benchmarks/lib/litellm-requirements.txt (see docs/benchmarks.md)")
    out = subprocess.run([str(py), "-c", "import importlib.metadata as m; "
                          "print(m.version('litellm'))"],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise Unavailable(f"LiteLLM is not importable in {venv}: {out.stderr.strip()[-300:]}")
    return out.stdout.strip()


def start_litellm(run_dir: Path, upstream_base: str, cpus: Sequence[int] | None,
                  venv: Path = LITELLM_VENV) -> Target:
    """LiteLLM proxy, its defaults (uvicorn, one worker), master key on, no database."""
    litellm_version(venv)
    config = run_dir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream_base}/v1\n"
        "      api_key: sk-upstream-unused\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n")
    port = free_port()
    # No network here: use the bundled model-cost map instead of fetching it at start-up.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    argv = [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]
    proc = Proc("litellm", argv, run_dir / "litellm.log", cpus=cpus,
                env=env, cwd=run_dir, repo_on_path=False)
    base = f"http://127.0.0.1:{port}"
    proc.wait_http(base + "/health/liveliness", 300)
    return Target("litellm", base + "/v1/chat/completions", base, token=LITELLM_MASTER_KEY,
                  pid=proc.pid, close=proc.stop)

