"""Real vLLM pools: launch specs (`configs/vllm/*.yaml`), rendering and launching.

    spec = find_pool("small")            # configs/vllm/small.yaml
    argv(spec, replica=0)                # ["vllm", "serve", "--model", ...]
    k8s_objects(spec)                    # Deployment + Service per replica
"""

from __future__ import annotations

from workers.vllm.launcher import LaunchError, check_launch, launch, visible_gpus
from workers.vllm.render import (
    argv,
    compose_service,
    container,
    gpu_ids,
    k8s_objects,
    replica_env,
    replica_name,
    replica_port,
    server_args,
    shell_command,
)
from workers.vllm.spec import (
    GATEWAY_FLAGS,
    PoolSpec,
    PoolSpecError,
    SpeculativeConfig,
    default_pool_dir,
    find_pool,
    load_pool,
    load_pools,
)

__all__ = [
    "GATEWAY_FLAGS",
    "LaunchError",
    "PoolSpec",
    "PoolSpecError",
    "SpeculativeConfig",
    "argv",
    "check_launch",
    "compose_service",
    "container",
    "default_pool_dir",
    "find_pool",
    "gpu_ids",
    "k8s_objects",
    "launch",
    "load_pool",
    "load_pools",
    "replica_env",
    "replica_name",
    "replica_port",
    "server_args",
    "shell_command",
    "visible_gpus",
]
