"""Figures for the simulator: `python -m workers.sim.bench load|spec-table`.

load        a lean HTTP/1.1 load generator: keep-alive connections on raw asyncio streams (no
            HTTP client library), so that on a small machine the client costs less CPU than
            the server it measures. Prints requests/s, latency percentiles and the server's
            CPU time per request. Starts its own `fast` simulator unless --url is given.
spec-table  time per output token with and without speculative decoding by batch size, from
            the engine on a virtual clock (no HTTP, no sleeping): what a profile implies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from urllib.parse import urlsplit

import orjson

from workers.sim.config import SimConfig
from workers.sim.process import SimServer


def _request(host: str, path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (content-length or chunked); returns the status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    marker = lower.find(b"content-length:")
    if marker >= 0:
        end = lower.index(b"\r\n", marker)
        await reader.readexactly(int(lower[marker + 15 : end]))
        return status
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return status


async def _worker(
    url: str, payload: bytes, deadline: float, latencies: list[float], errors: list[int]
) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    request = _request(parts.netloc, parts.path, payload)
    clock = time.perf_counter
    try:
        while clock() < deadline:
            start = clock()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(clock() - start)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def run_load(
    url: str, payload: dict[str, object], concurrency: int, seconds: float
) -> dict[str, float]:
    body = orjson.dumps(payload)
    latencies: list[float] = []
    errors: list[int] = []
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    await asyncio.gather(
        *(_worker(url, body, deadline, latencies, errors) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(ordered) if ordered else 0.0,
        "p99_ms": 1000 * ordered[int(len(ordered) * 0.99) - 1] if ordered else 0.0,
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(args: argparse.Namespace) -> None:
    payload: dict[str, object] = {
        "model": "sim-model",
        "messages": [{"role": "user", "content": args.prompt}],
        "max_tokens": args.max_tokens,
        "stream": args.stream,
    }
    if args.stream:
        payload["stream_options"] = {"include_usage": True}
    label = f"stream={args.stream} max_tokens={args.max_tokens} concurrency={args.concurrency}"
    if args.url:
        result = asyncio.run(
            run_load(args.url + "/v1/chat/completions", payload, args.concurrency, args.seconds)
        )
        cpu = ""
    else:
        with SimServer(model="sim-model", profile="fast") as sim:
            assert sim.process is not None
            before = _cpu_seconds(sim.process.pid)
            result = asyncio.run(
                run_load(sim.url + "/v1/chat/completions", payload, args.concurrency, args.seconds)
            )
            used = _cpu_seconds(sim.process.pid) - before
        per_request = used / max(1.0, result["requests"])
        cpu = f", server CPU {per_request * 1e6:.0f} us/request "
        cpu += f"({1 / per_request:.0f} req/s per core)"
    print(
        f"{label}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms, "
        f"p99 {result['p99_ms']:.2f} ms, {result['requests']:.0f} requests, "
        f"{result['errors']:.0f} errors{cpu}"
    )


def spec_table(args: argparse.Namespace) -> None:
    from workers.sim.engine import Engine
    from workers.sim.plans import Planner
    from workers.sim.protocol import ParseContext, parse_chat
    from workers.sim.tokenizer import Tokenizer

    tokenizer = Tokenizer()
    planner = Planner(tokenizer, (16, 128))

    def per_token_ms(batch: int, spec_k: int) -> float:
        config = SimConfig.from_profile(
            args.profile,
            seed=1,
            max_num_seqs=max(batch, 1),
            num_gpu_blocks=1_000_000,
            spec_k=spec_k,
            spec_alpha=args.alpha,
        )
        engine = Engine(config, planner)
        ctx = ParseContext([config.model], config.max_model_len, tokenizer, "lorem")
        body = {
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": args.tokens,
            "ignore_eos": True,
        }
        jobs = []
        for _ in range(batch):
            job = engine.make_job(parse_chat(body, ctx, None), None, 0.0)
            engine.submit(job)
            jobs.append(job)
        engine.run_virtual()
        seqs = [seq for job in jobs for seq in job.seqs]
        return 1000 * statistics.mean(
            (s.t_last - (s.t_first or 0.0)) / (s.emitted - 1) for s in seqs
        )

    print(f"profile {args.profile}: ms per output token (decode), k={args.k} alpha={args.alpha}")
    print("| batch | no speculation | speculation | speed-up |")
    print("|------:|---------------:|------------:|---------:|")
    for batch in args.batches:
        plain, spec = per_token_ms(batch, 0), per_token_ms(batch, args.k)
        print(f"| {batch} | {plain:.1f} | {spec:.1f} | {plain / spec:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    load_args = commands.add_parser("load", help="HTTP load against a simulator")
    load_args.add_argument("--url", help="simulator base URL (default: start a fast simulator)")
    load_args.add_argument("--concurrency", type=int, default=32)
    load_args.add_argument("--seconds", type=float, default=5.0)
    load_args.add_argument("--max-tokens", type=int, default=16)
    load_args.add_argument("--stream", action="store_true")
    load_args.add_argument("--prompt", default="Summarise the plot of Hamlet in two sentences.")
    table_args = commands.add_parser("spec-table", help="speculative decoding by batch size")
    table_args.add_argument("--profile", default="realistic-large")
    table_args.add_argument("--k", type=int, default=4)
    table_args.add_argument("--alpha", type=float, default=0.7)
    table_args.add_argument("--tokens", type=int, default=200)
    table_args.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64, 128, 256])
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.command == "load":
        load(args)
    else:
        spec_table(args)


if __name__ == "__main__":
    main()
