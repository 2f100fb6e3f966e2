"""A lean HTTP/1.1 load generator for the simulator: `python -m workers.sim.bench`.

Keep-alive connections on raw asyncio streams (no HTTP client library), so that on a small
machine the client costs less CPU than the server it measures. Prints requests/s and latency
percentiles. It starts its own `fast` simulator unless --url is given.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from urllib.parse import urlsplit

import orjson

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="simulator base URL (default: start a fast simulator)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--prompt", default="Summarise the plot of Hamlet in two sentences.")
    args = parser.parse_args()
    payload: dict[str, object] = {
        "model": "sim-model",
        "messages": [{"role": "user", "content": args.prompt}],
        "max_tokens": args.max_tokens,
        "stream": args.stream,
    }
    if args.stream:
        payload["stream_options"] = {"include_usage": True}
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.url:
        result = asyncio.run(
            run_load(args.url + "/v1/chat/completions", payload, args.concurrency, args.seconds)
        )
    else:
        with SimServer(model="sim-model", profile="fast") as sim:
            result = asyncio.run(
                run_load(sim.url + "/v1/chat/completions", payload, args.concurrency, args.seconds)
            )
    print(
        f"stream={args.stream} max_tokens={args.max_tokens} concurrency={args.concurrency}: "
        f"{result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
        f"{result['requests']:.0f} requests, {result['errors']:.0f} errors"
    )


if __name__ == "__main__":
    main()
