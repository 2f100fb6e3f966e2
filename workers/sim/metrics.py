"""Prometheus text exposition with vLLM's metric names and labels (model_name, engine).

Hand-rolled instead of prometheus_client so that one process can host several engines in
tests and so that an increment is a plain attribute add on the hot path.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

TTFT_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
TPOT_BUCKETS: Final = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
REQUEST_LATENCY_BUCKETS: Final = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
ITERATION_TOKEN_BUCKETS: Final = (
    1,
    8,
    16,
    32,
    64,
    128,
    256,
    512,
    1024,
    2048,
    4096,
    8192,
    16384,
)
N_BUCKETS: Final = (1, 2, 5, 10, 20)


def one_two_five_buckets(max_value: int) -> tuple[float, ...]:
    """vLLM's 1-2-5 buckets up to max_value (used for token-count histograms)."""
    buckets: list[float] = []
    exponent = 1
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * exponent
            if value > max_value:
                return tuple(buckets)
            buckets.append(value)
        exponent *= 10


@dataclass(slots=True)
class Histogram:
    buckets: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1


# finished_reason values of vLLM's request_success counter (tool calls finish as "stop").
FINISH_REASONS: Final = ("stop", "length", "abort")


class EngineMetrics:
    """Counters, gauges and histograms of one simulated engine."""

    def __init__(self, model: str, max_model_len: int, spec_k: int, cache_info: dict[str, str]):
        self.model = model
        self.spec_k = spec_k
        self.cache_info = cache_info
        self.created = time.time()
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.preemptions = 0
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.spec_drafts = 0
        self.spec_draft_tokens = 0
        self.spec_accepted = 0
        self.spec_accepted_per_pos = [0] * spec_k
        self.success = dict.fromkeys(FINISH_REASONS, 0)
        token_buckets = one_two_five_buckets(max_model_len)
        self.ttft = Histogram(TTFT_BUCKETS)
        self.tpot = Histogram(TPOT_BUCKETS)
        self.itl = Histogram(TPOT_BUCKETS)
        self.e2e = Histogram(REQUEST_LATENCY_BUCKETS)
        self.queue_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.inference_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.prefill_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.decode_time = Histogram(REQUEST_LATENCY_BUCKETS)
        self.request_prompt_tokens = Histogram(token_buckets)
        self.request_generation_tokens = Histogram(token_buckets)
        self.request_max_tokens = Histogram(token_buckets)
        self.request_n = Histogram(N_BUCKETS)
        self.iteration_tokens = Histogram(ITERATION_TOKEN_BUCKETS)

    def render(self, running: int, waiting: int, kv_usage: float) -> str:
        labels = f'model_name="{_escape(self.model)}",engine="0"'
        out: list[str] = []

        def gauge(name: str, help_text: str, value: float) -> None:
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
            out.append(f"{name}{{{labels}}} {_num(value)}\n")

        def counter(name: str, help_text: str, value: float) -> None:
            out.append(f"# HELP {name}_total {help_text}\n# TYPE {name}_total counter\n")
            out.append(f"{name}_total{{{labels}}} {_num(value)}\n")
            out.append(f"{name}_created{{{labels}}} {self.created}\n")

        def histogram(name: str, help_text: str, hist: Histogram) -> None:
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} histogram\n")
            cumulative = 0
            for bound, count in zip(hist.buckets, hist.counts, strict=False):
                cumulative += count
                out.append(f'{name}_bucket{{{labels},le="{float(bound)}"}} {cumulative}.0\n')
            out.append(f'{name}_bucket{{{labels},le="+Inf"}} {hist.count}.0\n')
            out.append(f"{name}_count{{{labels}}} {hist.count}.0\n")
            out.append(f"{name}_sum{{{labels}}} {_num(hist.total)}\n")

        gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", running
        )
        gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting)
        gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv_usage)
        gauge(
            "vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage. DEPRECATED: Use "
            "vllm:kv_cache_usage_perc instead.",
            kv_usage,
        )
        counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            self.prefix_queries,
        )
        counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            self.prefix_hits,
        )
        counter(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            self.preemptions,
        )
        counter("vllm:prompt_tokens", "Number of prefill tokens processed.", self.prompt_tokens)
        counter(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            self.generation_tokens,
        )
        out.append(
            "# HELP vllm:request_success_total Count of successfully processed requests.\n"
            "# TYPE vllm:request_success_total counter\n"
        )
        for reason, value in self.success.items():
            out.append(
                f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} {value}.0\n'
            )
        if self.spec_k:
            counter(
                "vllm:spec_decode_num_drafts", "Number of spec decoding drafts.", self.spec_drafts
            )
            counter(
                "vllm:spec_decode_num_draft_tokens",
                "Number of draft tokens.",
                self.spec_draft_tokens,
            )
            counter(
                "vllm:spec_decode_num_accepted_tokens",
                "Number of accepted tokens.",
                self.spec_accepted,
            )
            name = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
            out.append(
                f"# HELP {name} Accepted tokens per draft position.\n# TYPE {name} counter\n"
            )
            for position, value in enumerate(self.spec_accepted_per_pos):
                out.append(f'{name}{{{labels},position="{position}"}} {value}.0\n')
        histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            self.iteration_tokens,
        )
        histogram(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            self.request_prompt_tokens,
        )
        histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            self.request_generation_tokens,
        )
        histogram(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            self.request_max_tokens,
        )
        histogram("vllm:request_params_n", "Histogram of the n request parameter.", self.request_n)
        histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            self.ttft,
        )
        histogram(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            self.tpot,
        )
        histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            self.itl,
        )
        histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            self.e2e,
        )
        histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            self.queue_time,
        )
        histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            self.inference_time,
        )
        histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            self.prefill_time,
        )
        histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            self.decode_time,
        )
        info = ",".join(f'{k}="{_escape(v)}"' for k, v in self.cache_info.items())
        out.append(
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n"
            "# TYPE vllm:cache_config_info gauge\n"
            f'vllm:cache_config_info{{engine="0",{info}}} 1.0\n'
        )
        return "".join(out)


def _num(value: float) -> str:
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
