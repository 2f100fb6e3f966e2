"""The floor under any Python gateway on this machine: what uvicorn and an HTTP client cost alone.

    python -m benchmarks.lib.floor [--concurrency 1,16,64] [--extra-path DIR]

Runs bare ASGI apps under the same uvicorn (uvloop + httptools) that `frugate serve` uses, in
front of the same fixed upstream, pinned like the gateway benchmarks, and prints RPS and CPU
milliseconds per request for each:
    server-only   answers by itself (uvicorn + httptools, no upstream call)
    httpx         forwards with httpx.AsyncClient (httpcore + h11 underneath)
    httpx+frugate-transport   the same client on frugate's HTTP/1.1 transport (httptools)
    httpx2        the same with pydantic's httpx fork (if importable)
    aiohttp       forwards with aiohttp.ClientSession (if importable)
httpx2 and aiohttp are not frugate dependencies: `pip install --target DIR aiohttp httpx2` and
pass `--extra-path DIR` (several dirs: os.pathsep-separated).
The difference between a frugate figure and these says how much is frugate's own work.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_HEADERS = [(b"content-type", b"application/json")]


async def _body(receive: Receive) -> bytes:
    body = b""
    while True:
        m = await receive()
        body += bytes(m.get("body", b""))
        if not m.get("more_body"):
            return body


async def _reply(send: Send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": body})


def _upstream() -> str:
    return os.environ["BENCH_UPSTREAM_URL"] + "/v1/chat/completions"


class ServerOnly:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await _body(receive)
            await _reply(send, b'{"ok":true}')


class HttpxForward:
    module = "httpx"

    def __init__(self) -> None:
        import importlib

        httpx = importlib.import_module(self.module)
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        self.client = httpx.AsyncClient(limits=limits, trust_env=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            body = await _body(receive)
            r = await self.client.post(_upstream(), content=body,
                                       headers={"content-type": "application/json"})
            await _reply(send, r.content)


class FrugateTransportForward(HttpxForward):
    """httpx.AsyncClient on frugate's own HTTP/1.1 transport (gateway/upstream/transport.py)."""

    def __init__(self) -> None:
        import httpx

        from gateway.upstream.transport import HTTP11Transport

        self.client = httpx.AsyncClient(transport=HTTP11Transport(max_idle_per_host=512),
                                        trust_env=False)


class Httpx2Forward(HttpxForward):
    module = "httpx2"  # pydantic's httpx fork, same API


class AiohttpForward:
    def __init__(self) -> None:
        self.session: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        import aiohttp

        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
        body = await _body(receive)
        async with self.session.post(_upstream(), data=body,
                                     headers={"content-type": "application/json"}) as r:
            content = await r.read()
        await _reply(send, content)


APPS: dict[str, Callable[[], Any]] = {
    "server-only": ServerOnly, "httpx": HttpxForward,
    "httpx+frugate-transport": FrugateTransportForward, "httpx2": Httpx2Forward,
    "aiohttp": AiohttpForward}
OPTIONAL = ("httpx2", "aiohttp")  # not frugate dependencies: measured when importable


def serve(argv: list[str]) -> None:
    """Child process entry: `python -m benchmarks.lib.floor --serve NAME PORT`."""
    import uvicorn

    name, port = argv[0], int(argv[1])
    uvicorn.run(APPS[name](), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, lifespan="off")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(argv[1:])
        return 0
    from benchmarks.lib import wrk
    from benchmarks.lib.cli import layout
    from benchmarks.lib.matrix import write_bodies
    from benchmarks.lib.procs import Proc, free_port, python_module
    from benchmarks.lib.targets import cpu_seconds, start_upstream

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--extra-path", default="",
                    help="dirs with aiohttp / httpx2, added to PYTHONPATH")
    ap.add_argument("--gateway-cpus", default=None)
    ap.add_argument("--load-cpus", default=None)
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args(argv)
    lay = layout(args)
    run_dir = Path(tempfile.mkdtemp(prefix="frugate-floor-"))
    body = write_bodies(run_dir)[False]
    upstream = start_upstream("fixed", run_dir, lay.load, 16)
    procs: dict[str, tuple[Proc, str]] = {}
    try:
        for name in APPS:
            if name in OPTIONAL and not _importable(name, args.extra_path):
                print(f"{name}: not importable, skipped (see --extra-path)", file=sys.stderr)
                continue
            port = free_port()
            env = {"BENCH_UPSTREAM_URL": upstream.base}
            if args.extra_path:
                env["PYTHONPATH"] = args.extra_path
            p = Proc(name, python_module("benchmarks.lib.floor", "--serve", name, str(port)),
                     run_dir / f"{name}.log", cpus=lay.gateway, env=env)
            procs[name] = (p, f"http://127.0.0.1:{port}/v1/chat/completions")
        for p, url in procs.values():
            # Every app answers 200 to anything (the forwarders relay the upstream's body).
            p.wait_http(url.replace("/v1/chat/completions", "/"), 60)
            wrk.run(url, body, connections=16, duration_s=2, cpus=lay.load)  # warm-up
        print(f"{lay.describe()}; medians of {args.rounds} x {args.duration:g} s\n")
        print("| app | c | RPS | p50 ms | CPU ms/req |\n|---|---|---|---|---|")
        for c in (int(x) for x in args.concurrency.split(",")):
            for name, (p, url) in procs.items():
                res = []
                for _ in range(args.rounds):
                    before = cpu_seconds(p.pid)
                    r = wrk.run(url, body, connections=c, duration_s=args.duration,
                                cpus=lay.load)
                    res.append((r.rps, r.p50_ms, (cpu_seconds(p.pid) - before) / r.requests
                                * 1000))
                med = [statistics.median(x[i] for x in res) for i in range(3)]
                print(f"| {name} | {c} | {med[0]:,.0f} | {med[1]:.2f} | {med[2]:.3f} |",
                      flush=True)
        print(f"\n1-min load average at the end: {os.getloadavg()[0]:.2f}")
    finally:
        for p, _ in procs.values():
            p.stop()
        upstream.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def _importable(module: str, extra_path: str) -> bool:
    import subprocess

    env = {**os.environ, "PYTHONPATH": extra_path} if extra_path else None
    return subprocess.run([sys.executable, "-c", f"import {module}"], env=env,
                          capture_output=True, check=False).returncode == 0


if __name__ == "__main__":
    sys.exit(main())
