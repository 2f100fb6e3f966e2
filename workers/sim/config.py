"""Simulator settings: profiles, the per-engine cost model, and runtime faults."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

OutputMode = Literal["lorem", "echo"]

# Each profile only lists what differs from the SimConfig defaults. The realistic numbers are
# rough figures for an 8B model on one H100 (small) and a 70B model on 4xH100 with a draft
# model (large); they exist to make latency curves look right, not to predict a deployment.
PROFILES: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "fast": MappingProxyType({}),
        "realistic-small": MappingProxyType(
            {
                "ttft_ms": 15.0,
                "prefill_ms_per_token": 0.04,
                "itl_ms": 10.0,
                "batch_ms_per_token": 0.06,
                "max_num_seqs": 128,
                "max_model_len": 16384,
                "num_gpu_blocks": 20000,
                "output_tokens": (24, 160),
            }
        ),
        "realistic-large": MappingProxyType(
            {
                "ttft_ms": 45.0,
                "prefill_ms_per_token": 0.15,
                "itl_ms": 25.0,
                "batch_ms_per_token": 0.3,
                "max_num_seqs": 256,
                "max_model_len": 32768,
                "num_gpu_blocks": 12000,
                "spec_k": 4,
                "spec_alpha": 0.7,
                "spec_draft_ms": 1.5,
                "output_tokens": (32, 240),
            }
        ),
    }
)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything that shapes one simulated vLLM server. Times are milliseconds."""

    model: str = "sim-model"
    profile: str = "fast"
    host: str = "127.0.0.1"
    port: int = 8000
    # Context and scheduler limits (vLLM's --max-model-len, --max-num-seqs, ...).
    max_model_len: int = 8192
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_size: int = 16
    num_gpu_blocks: int = 16384
    enable_prefix_caching: bool = True
    # Cost model of one engine step (see docs/simulator.md):
    #   decode part  = itl_ms + batch_ms_per_token * (decode tokens in the step - 1)
    #                  + spec_draft_ms * spec_k            (only when speculating)
    #   prefill part = ttft_ms + prefill_ms_per_token * prompt tokens computed in the step
    ttft_ms: float = 0.0
    prefill_ms_per_token: float = 0.0
    itl_ms: float = 0.0
    batch_ms_per_token: float = 0.0
    # Speculative decoding: k drafted tokens per step, each accepted with probability alpha
    # until the first rejection.
    spec_k: int = 0
    spec_alpha: float = 0.7
    spec_draft_ms: float = 0.0
    # Output: lorem (seeded filler text) or echo (the last user message / the prompt).
    output: OutputMode = "lorem"
    output_tokens: tuple[int, int] = (16, 128)
    seed: int | None = None
    # vLLM reports prompt_tokens_details only with --enable-prompt-tokens-details.
    prompt_tokens_details: bool = False
    tokenizer_file: str | None = None
    # Initial faults; /sim/faults changes them at runtime.
    error_rate: float = 0.0
    stall_rate: float = 0.0
    stall_ms: float = 0.0
    crash_after: int | None = None
    log_level: str = "warning"

    @property
    def instant(self) -> bool:
        """True when no step takes time: requests are answered without the scheduler loop."""
        costs = (
            self.ttft_ms,
            self.prefill_ms_per_token,
            self.itl_ms,
            self.batch_ms_per_token,
            self.spec_draft_ms,
        )
        return not any(costs)

    @classmethod
    def from_profile(cls, profile: str = "fast", **overrides: Any) -> SimConfig:
        """The profile's settings with `overrides` on top; None values are ignored."""
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
        values: dict[str, Any] = dict(PROFILES[profile])
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["profile"] = profile
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.max_model_len < 2:
            raise ValueError("max_model_len must be at least 2")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be positive")
        if self.num_gpu_blocks * self.block_size < self.max_model_len:
            raise ValueError("the KV cache must hold at least one max_model_len sequence")
        if not 0.0 <= self.spec_alpha <= 1.0 or self.spec_k < 0:
            raise ValueError("spec_alpha must be in [0, 1] and spec_k >= 0")
        low, high = self.output_tokens
        if not 1 <= low <= high:
            raise ValueError("output_tokens must be (min, max) with 1 <= min <= max")
        if self.output not in ("lorem", "echo"):
            raise ValueError("output must be 'lorem' or 'echo'")
        for name in ("ttft_ms", "prefill_ms_per_token", "itl_ms", "batch_ms_per_token"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["output_tokens"] = list(self.output_tokens)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SimConfig:
        values = dict(data)
        if "output_tokens" in values:
            values["output_tokens"] = tuple(values["output_tokens"])
        config = cls(**values)
        config.validate()
        return config


def parse_output_tokens(text: str) -> tuple[int, int]:
    """'64' -> (64, 64); '16:128' -> (16, 128)."""
    low, _, high = text.partition(":")
    return int(low), int(high or low)


@dataclass(slots=True)
class Faults:
    """Failure injection, changed at runtime through POST /sim/faults.

    error_rate           share of requests answered with HTTP `error_status` before any byte
    midstream_error_rate share of requests that fail after some tokens (an SSE error frame
                         when streaming, HTTP 500 otherwise)
    stall_rate           share of requests that stop producing tokens after
                         `stall_after_tokens` tokens, for `stall_ms` (0 = until the client leaves)
    crash_after          the process exits abruptly when generation request number
                         crash_after + 1 arrives
    unhealthy            /health answers 503
    freeze_until         monotonic time until which the whole engine takes no step
    """

    error_rate: float = 0.0
    error_status: int = 500
    midstream_error_rate: float = 0.0
    stall_rate: float = 0.0
    stall_ms: float = 0.0
    stall_after_tokens: int = 0
    crash_after: int | None = None
    unhealthy: bool = False
    freeze_until: float = 0.0

    @classmethod
    def from_config(cls, config: SimConfig) -> Faults:
        return cls(
            error_rate=config.error_rate,
            stall_rate=config.stall_rate,
            stall_ms=config.stall_ms,
            crash_after=config.crash_after,
        )

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate,
            "error_status": self.error_status,
            "midstream_error_rate": self.midstream_error_rate,
            "stall_rate": self.stall_rate,
            "stall_ms": self.stall_ms,
            "stall_after_tokens": self.stall_after_tokens,
            "crash_after": self.crash_after,
            "unhealthy": self.unhealthy,
            "frozen_ms_left": max(0.0, (self.freeze_until - now) * 1000.0),
        }
