"""`frugate sim-worker`: the vLLM simulator's command line (also `python -m workers.sim`).

Kept light: heavy modules (uvicorn, tiktoken) are imported only when the server starts, so
that `frugate --help` stays fast.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from workers.sim.config import PROFILES, SimConfig, parse_output_tokens

PROFILE_HELP = "Preset: " + ", ".join(PROFILES) + ". Flags below override single values."


def sim_worker(
    model: Annotated[
        str, typer.Option(help="Served model name (vLLM's --served-model-name).")
    ] = "sim-model",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    profile: Annotated[str, typer.Option(help=PROFILE_HELP)] = "fast",
    max_model_len: Annotated[int | None, typer.Option(help="Context length.")] = None,
    max_num_seqs: Annotated[int | None, typer.Option(help="Running sequences per step.")] = None,
    max_num_batched_tokens: Annotated[
        int | None, typer.Option(help="Token budget per step (chunked prefill).")
    ] = None,
    num_gpu_blocks: Annotated[int | None, typer.Option(help="KV cache size in blocks.")] = None,
    no_prefix_caching: Annotated[
        bool, typer.Option("--no-prefix-caching", help="Disable automatic prefix caching.")
    ] = False,
    ttft_ms: Annotated[
        float | None, typer.Option(help="Fixed cost of a step with prefill.")
    ] = None,
    prefill_ms_per_token: Annotated[
        float | None, typer.Option(help="Prefill cost per uncached prompt token.")
    ] = None,
    itl_ms: Annotated[float | None, typer.Option(help="Decode step time at batch size 1.")] = None,
    batch_ms_per_token: Annotated[
        float | None, typer.Option(help="Extra step time per token in the batch.")
    ] = None,
    spec_k: Annotated[int | None, typer.Option(help="Speculative draft length (0 = off).")] = None,
    spec_alpha: Annotated[float | None, typer.Option(help="Draft token acceptance rate.")] = None,
    spec_draft_ms: Annotated[
        float | None, typer.Option(help="Step cost per drafted token (0 for n-gram).")
    ] = None,
    output: Annotated[str | None, typer.Option(help="lorem | echo")] = None,
    output_tokens: Annotated[
        str | None, typer.Option(help="Natural output length, N or MIN:MAX tokens.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for outputs and fault draws.")] = None,
    prompt_tokens_details: Annotated[
        bool, typer.Option(help="Report usage.prompt_tokens_details.cached_tokens.")
    ] = False,
    error_rate: Annotated[
        float | None, typer.Option(help="Share of requests answered 500.")
    ] = None,
    stall_rate: Annotated[float | None, typer.Option(help="Share of requests that stall.")] = None,
    stall_ms: Annotated[
        float | None, typer.Option(help="Stall length; 0 = until disconnect.")
    ] = None,
    crash_after: Annotated[
        int | None, typer.Option(help="Exit abruptly when request N+1 arrives.")
    ] = None,
    tokenizer_file: Annotated[
        str | None, typer.Option(help="cl100k_base.tiktoken rank file to load.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    config_json: Annotated[str | None, typer.Option(hidden=True)] = None,
    fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the vLLM simulator: an OpenAI-compatible server that behaves like vLLM.

    A simulator, not vLLM. It models continuous batching, prefill and decode costs,
    speculative decoding, vLLM's metrics and faults; it writes lorem or echo text.
    See docs/simulator.md.

    Examples:

      frugate sim-worker --model small --port 8101 --profile realistic-small

      frugate sim-worker --model large --port 8102 --profile realistic-large --spec-k 0

      frugate sim-worker --profile fast --error-rate 0.05 --crash-after 1000
    """
    from workers.sim.server import serve

    if config_json is not None:
        config = SimConfig.from_dict(json.loads(config_json))
    else:
        try:
            config = SimConfig.from_profile(
                profile,
                model=model,
                port=port,
                host=host,
                max_model_len=max_model_len,
                max_num_seqs=max_num_seqs,
                max_num_batched_tokens=max_num_batched_tokens,
                num_gpu_blocks=num_gpu_blocks,
                enable_prefix_caching=False if no_prefix_caching else None,
                ttft_ms=ttft_ms,
                prefill_ms_per_token=prefill_ms_per_token,
                itl_ms=itl_ms,
                batch_ms_per_token=batch_ms_per_token,
                spec_k=spec_k,
                spec_alpha=spec_alpha,
                spec_draft_ms=spec_draft_ms,
                output=output,
                output_tokens=parse_output_tokens(output_tokens) if output_tokens else None,
                seed=seed,
                prompt_tokens_details=prompt_tokens_details or None,
                error_rate=error_rate,
                stall_rate=stall_rate,
                stall_ms=stall_ms,
                crash_after=crash_after,
                tokenizer_file=tokenizer_file,
                log_level=log_level,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    serve(config, fd=fd)


def main() -> None:
    typer.run(sim_worker)
