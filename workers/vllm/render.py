"""Turn a PoolSpec into the exact vLLM command line, container spec, or deployment objects.

All forms come from `server_args`, so the argv a test checks against vLLM's own parser is the
argv the container runs.
"""

from __future__ import annotations

import shlex
from typing import Any

from workers.vllm.spec import GATEWAY_FLAGS, PoolSpec

HEALTH_PATH = "/health"
HF_CACHE = "/root/.cache/huggingface"


def replica_name(spec: PoolSpec, replica: int) -> str:
    """`vllm-<pool>-<i>`: the Deployment, Service and compose name of one replica."""
    spec.check_replica(replica)
    return f"vllm-{spec.name}-{replica}"


def replica_port(spec: PoolSpec, replica: int) -> int:
    """The port of replica `replica` when every replica runs on one host."""
    spec.check_replica(replica)
    return spec.port_base + replica


def gpu_ids(spec: PoolSpec, replica: int) -> list[int]:
    """GPUs of replica `replica` on one host: tp consecutive devices per replica."""
    spec.check_replica(replica)
    tp = spec.tensor_parallel_size
    return list(range(replica * tp, (replica + 1) * tp))


def server_args(spec: PoolSpec, replica: int = 0, port: int | None = None) -> list[str]:
    """The arguments after the entrypoint (`vllm serve`) for one replica."""
    spec.check_replica(replica)
    args = ["--model", spec.model]
    if spec.served_model_name:
        args += ["--served-model-name", spec.served_model_name]
    if spec.tokenizer:
        args += ["--tokenizer", spec.tokenizer]
    if spec.revision:
        args += ["--revision", spec.revision]
    args += [
        "--host", spec.host,
        "--port", str(replica_port(spec, replica) if port is None else port),
        "--tensor-parallel-size", str(spec.tensor_parallel_size),
        "--max-model-len", str(spec.max_model_len),
        "--dtype", spec.dtype,
    ]
    if spec.gpu_memory_utilization is not None and spec.device == "gpu":
        args += ["--gpu-memory-utilization", f"{spec.gpu_memory_utilization:g}"]
    args.append("--enable-prefix-caching" if spec.enable_prefix_caching
                else "--no-enable-prefix-caching")
    if spec.max_num_seqs is not None:
        args += ["--max-num-seqs", str(spec.max_num_seqs)]
    if spec.max_num_batched_tokens is not None:
        args += ["--max-num-batched-tokens", str(spec.max_num_batched_tokens)]
    if spec.load_format:
        args += ["--load-format", spec.load_format]
    if spec.enforce_eager:
        args.append("--enforce-eager")
    if spec.speculative is not None and spec.speculates(replica):
        args += ["--speculative-config", spec.speculative.to_json()]
    args += list(GATEWAY_FLAGS)
    args += spec.extra_args
    return args


def replica_env(spec: PoolSpec, replica: int) -> dict[str, str]:
    """Environment for one replica on one host: the pool's env plus its GPU slice."""
    env = dict(spec.env)
    if spec.device == "gpu":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids(spec, replica))
    return env


def argv(spec: PoolSpec, replica: int = 0) -> list[str]:
    """The full command line of one replica on one host."""
    return [*spec.entrypoint, *server_args(spec, replica)]


def shell_command(spec: PoolSpec, replica: int = 0) -> str:
    """`ENV=... vllm serve ...` as one line a person can paste."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in replica_env(spec, replica).items())
    cmd = shlex.join(argv(spec, replica))
    return f"{env} {cmd}" if env else cmd


def container(spec: PoolSpec, replica: int = 0) -> dict[str, Any]:
    """A Kubernetes container spec for one replica (port_base inside every container)."""
    port = spec.port_base
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in spec.env.items()]
    env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "hf-token", "key": "token", "optional": True}}})
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if spec.device == "gpu":
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(spec.tensor_parallel_size)
    if spec.cpu_request:
        requests["cpu"] = spec.cpu_request
    if spec.memory_request:
        requests["memory"] = spec.memory_request
    probe = {"httpGet": {"path": HEALTH_PATH, "port": "http"}}
    return {
        "name": "vllm",
        "image": spec.image,
        "command": list(spec.entrypoint),
        "args": server_args(spec, replica, port=port),
        "env": env,
        "ports": [{"name": "http", "containerPort": port}],
        "resources": {"requests": requests, "limits": limits},
        # Loading a 70B checkpoint takes minutes: the startup probe allows 30 of them
        # before liveness starts counting.
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 180},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4},
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "hf-cache", "mountPath": HF_CACHE},
        ],
    }


def _labels(spec: PoolSpec, replica: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/part-of": "frugate",
        "frugate.dev/pool": spec.name,
        "frugate.dev/replica": str(replica),
        "frugate.dev/speculative": "true" if spec.speculates(replica) else "false",
    }


def k8s_objects(spec: PoolSpec, replicas: list[int] | None = None) -> list[dict[str, Any]]:
    """A Deployment and a Service per replica (default: all), named `vllm-<pool>-<i>`.

    One Deployment per replica (not one with N pods) because replicas differ (speculative or
    plain) and the gateway addresses each replica by URL to balance on its scraped load.
    """
    objects: list[dict[str, Any]] = []
    for i in range(spec.replicas) if replicas is None else replicas:
        name = replica_name(spec, i)
        labels = _labels(spec, i)
        selector = {"frugate.dev/pool": spec.name, "frugate.dev/replica": str(i)}
        objects.append({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": 1,
                # Two copies of a model never fit on the same GPUs: stop the old pod first.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [container(spec, i)],
                        "volumes": [
                            {"name": "dshm",
                             "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}},
                            {"name": "hf-cache", "emptyDir": {}},
                        ],
                    },
                },
            },
        })
        objects.append({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": spec.port_base, "targetPort": "http"}],
            },
        })
    return objects


def compose_service(spec: PoolSpec, replica: int = 0) -> dict[str, Any]:
    """A docker-compose service for one replica, with GPU reservation and health check."""
    port = spec.port_base
    env = {**spec.env, "HF_TOKEN": "${HF_TOKEN:-}"}
    probe = f"import urllib.request; urllib.request.urlopen('http://localhost:{port}{HEALTH_PATH}')"
    service: dict[str, Any] = {
        "image": spec.image,
        "entrypoint": list(spec.entrypoint),
        "command": server_args(spec, replica, port=port),
        "environment": env,
        # Tensor-parallel workers share tensors through /dev/shm.
        "ipc": "host",
        "volumes": [f"hf-cache:{HF_CACHE}"],
        "expose": [str(port)],
        "healthcheck": {
            "test": ["CMD", "python3", "-c", probe],
            "interval": "10s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "900s",
        },
        "restart": "unless-stopped",
    }
    if spec.device == "gpu":
        service["deploy"] = {"resources": {"reservations": {"devices": [{
            "driver": "nvidia",
            "count": spec.tensor_parallel_size,
            "capabilities": ["gpu"],
        }]}}}
    return service
