"""The launch spec of one vLLM pool: what `configs/vllm/<pool>.yaml` holds.

A pool is N identical-model replicas. Each replica is one `vllm serve` process (one container)
on `tensor_parallel_size` GPUs. The first `speculative_replicas` replicas run speculative
decoding and the rest run plain, so that the gateway can send high-concurrency traffic to the
plain ones: speculation pays off at low batch sizes and costs throughput at high ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# The flags that render() writes itself. extra_args may not repeat them, so that a pool file
# cannot quietly contradict a field (or drop a flag the gateway relies on).
MANAGED_FLAGS = frozenset({
    "--model", "--served-model-name", "--tokenizer", "--revision", "--host", "--port",
    "--tensor-parallel-size", "-tp", "--max-model-len", "--gpu-memory-utilization",
    "--enable-prefix-caching", "--no-enable-prefix-caching", "--speculative-config",
    "--dtype", "--max-num-seqs", "--max-num-batched-tokens", "--load-format", "--enforce-eager",
    "--enable-prompt-tokens-details", "--enable-server-load-tracking",
    "--enable-request-id-headers",
})

# What the gateway needs from every replica: cached-token counts in usage (billing),
# `/load` (in-flight count for balancing) and X-Request-Id echoed on responses (log joins).
GATEWAY_FLAGS = (
    "--enable-prompt-tokens-details",
    "--enable-server-load-tracking",
    "--enable-request-id-headers",
)

# Methods that need a drafter checkpoint in `model`.
_DRAFTER_METHODS = frozenset({"eagle", "eagle3", "draft_model", "medusa", "mlp_speculator"})


class PoolSpecError(Exception):
    """A pool file that cannot be used; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpeculativeConfig(_Model):
    """vLLM's `--speculative-config` JSON (the subset frugate manages)."""

    method: Literal[
        "ngram", "eagle", "eagle3", "draft_model", "mtp", "suffix", "medusa", "mlp_speculator"
    ]
    num_speculative_tokens: int = Field(ge=1, le=16)
    model: str | None = None
    draft_tensor_parallel_size: int | None = Field(default=None, ge=1)
    prompt_lookup_max: int | None = Field(default=None, ge=1)
    prompt_lookup_min: int | None = Field(default=None, ge=1)
    # Dynamic speculation: (batch_from, batch_to, k) ranges; k=0 turns drafting off at that
    # batch size, which is how a pool keeps EAGLE's low-concurrency win without its
    # high-concurrency loss.
    num_speculative_tokens_per_batch_size: list[tuple[int, int, int]] | None = None

    @model_validator(mode="after")
    def _check_method(self) -> SpeculativeConfig:
        if self.method in _DRAFTER_METHODS and not self.model:
            raise ValueError(f"method {self.method!r} needs `model` (the drafter checkpoint)")
        if self.method == "ngram":
            if self.model is not None:
                raise ValueError("method 'ngram' takes no `model`")
            if self.prompt_lookup_max is None:
                raise ValueError("method 'ngram' needs `prompt_lookup_max`")
            low = self.prompt_lookup_min
            if low is not None and low > self.prompt_lookup_max:
                raise ValueError("prompt_lookup_min must be <= prompt_lookup_max")
        elif self.prompt_lookup_max is not None or self.prompt_lookup_min is not None:
            raise ValueError("prompt_lookup_min/max only apply to method 'ngram'")
        schedule = self.num_speculative_tokens_per_batch_size
        if schedule is not None:
            if not schedule or schedule[0][0] != 1:
                raise ValueError("num_speculative_tokens_per_batch_size must start at batch 1")
            end = 0
            for lo, hi, k in schedule:
                if lo <= end or hi < lo or k < 0 or k > self.num_speculative_tokens:
                    raise ValueError(
                        "num_speculative_tokens_per_batch_size: ranges must be sorted, "
                        "non-overlapping, and k in [0, num_speculative_tokens]")
                end = hi
        return self

    def to_json(self) -> str:
        """The compact JSON vLLM takes on the command line."""
        return json.dumps(self.model_dump(exclude_none=True), separators=(",", ":"))


class PoolSpec(_Model):
    """How to launch every replica of one vLLM pool."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    model: str
    served_model_name: str | None = None
    tokenizer: str | None = None
    revision: str | None = None
    device: Literal["gpu", "cpu"] = "gpu"
    image: str = "vllm/vllm-openai:v0.32.0"
    # How the process is started; the vllm/vllm-openai image runs `vllm serve`.
    entrypoint: list[str] = Field(default=["vllm", "serve"], min_length=1)
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int = Field(gt=0)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    enable_prefix_caching: bool = True
    speculative: SpeculativeConfig | None = None
    dtype: str = "auto"
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    load_format: str | None = None
    enforce_eager: bool = False
    replicas: int = Field(default=1, ge=1)
    # Replicas [0, speculative_replicas) speculate; None means all of them.
    speculative_replicas: int | None = Field(default=None, ge=0)
    host: str = "0.0.0.0"
    # Replica i listens on port_base + i when launched on one host; in a container it is
    # always port_base.
    port_base: int = Field(default=8000, gt=0, lt=65536)
    env: dict[str, str] = {}
    extra_args: list[str] = []
    # Container sizing (ignored by `launch`).
    shm_size: str = "16Gi"
    cpu_request: str | None = None
    memory_request: str | None = None

    @model_validator(mode="after")
    def _check(self) -> PoolSpec:
        if self.device == "gpu" and self.gpu_memory_utilization is None:
            raise ValueError("a gpu pool needs gpu_memory_utilization")
        if self.speculative_replicas is not None:
            if self.speculative is None:
                raise ValueError("speculative_replicas is set but `speculative` is not")
            if self.speculative_replicas > self.replicas:
                raise ValueError("speculative_replicas cannot exceed replicas")
        if self.port_base + self.replicas - 1 >= 65536:
            raise ValueError("port_base + replicas runs past 65535")
        for arg in self.extra_args:
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_FLAGS:
                raise ValueError(f"extra_args repeats {flag}; set the matching field instead")
        return self

    def speculates(self, replica: int) -> bool:
        """Whether replica `replica` runs speculative decoding."""
        self.check_replica(replica)
        if self.speculative is None:
            return False
        return self.speculative_replicas is None or replica < self.speculative_replicas

    def check_replica(self, replica: int) -> None:
        if not 0 <= replica < self.replicas:
            raise PoolSpecError(
                f"pool {self.name!r} has replicas 0..{self.replicas - 1}, not {replica}")

    @property
    def served_name(self) -> str:
        """The model name clients (the gateway) send to this pool."""
        return self.served_model_name or self.model


def load_pool(path: str | Path) -> PoolSpec:
    """Read and validate one pool file. Raises PoolSpecError naming the file and the field."""
    path = Path(path)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PoolSpecError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise PoolSpecError(f"{path}: expected a mapping at the top level")
    raw.setdefault("name", path.stem)
    try:
        return PoolSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors())
        raise PoolSpecError(f"{path}: {problems}") from exc


def default_pool_dir() -> Path:
    """`configs/vllm/` of the checkout this package was imported from."""
    return Path(__file__).resolve().parents[2] / "configs" / "vllm"


def find_pool(name_or_path: str, pool_dir: Path | None = None) -> PoolSpec:
    """A pool by name (`small` -> `<pool_dir>/small.yaml`) or by path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.is_file():
        return load_pool(candidate)
    directory = pool_dir or default_pool_dir()
    path = directory / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise PoolSpecError(
            f"no pool {name_or_path!r} in {directory} (known: {', '.join(known) or 'none'})")
    return load_pool(path)


def load_pools(pool_dir: Path | None = None) -> list[PoolSpec]:
    """Every pool file in `pool_dir` (default `configs/vllm/`), sorted by name."""
    directory = pool_dir or default_pool_dir()
    return [load_pool(p) for p in sorted(directory.glob("*.yaml"))]
