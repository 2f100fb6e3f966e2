"""A minimal fixed-response OpenAI upstream: the cheapest server the gateways can talk to.

    python -m benchmarks.lib.upstream --port 9300 [--tokens 16]

A raw asyncio protocol (uvloop when installed) that speaks just enough HTTP/1.1 for httpx,
aiohttp and wrk: keep-alive, Content-Length or chunked request bodies, pipelining. It answers
`POST /v1/chat/completions` with a fixed completion of `--tokens` tokens, as JSON or, with
`"stream": true`, as vLLM-shaped SSE (role on the first token, finish chunk, a usage chunk when
`stream_options.include_usage` is set, `[DONE]`); each SSE event is written separately, so the
gateway relays a real multi-chunk stream. `GET /health`, `/metrics` (vLLM gauges) and
`/v1/models` keep the gateways' monitors happy. Nothing is simulated: no batching, no delay, so
the time measured through a gateway on top of this is the gateway's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from typing import cast

import orjson

PROMPT_TOKENS = 24
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")


@dataclass
class Replies:
    """Pre-rendered response bodies per model name (the only thing echoed from the request)."""

    tokens: int
    _json: dict[str, bytes] = field(default_factory=dict)
    _events: dict[tuple[str, bool], list[bytes]] = field(default_factory=dict)

    def pieces(self) -> list[str]:
        return [(" " if i else "") + _WORDS[i % len(_WORDS)] for i in range(self.tokens)]

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": self.tokens,
                "total_tokens": PROMPT_TOKENS + self.tokens}

    def json(self, model: str) -> bytes:
        body = self._json.get(model)
        if body is None:
            body = self._json[model] = orjson.dumps({
                "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000,
                "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": "".join(self.pieces())}}],
                "usage": self.usage()})
        return body

    def events(self, model: str, include_usage: bool) -> list[bytes]:
        """The SSE frames of one streamed answer, each already framed as an HTTP chunk."""
        key = (model, include_usage)
        frames = self._events.get(key)
        if frames is None:
            head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk",
                    "created": 1700000000, "model": model}
            payloads = []
            for i, piece in enumerate(self.pieces()):
                delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                payloads.append({**head, "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]})
            payloads.append({**head, "choices": [
                {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
            if include_usage:
                payloads.append({**head, "choices": [], "usage": self.usage()})
            data = [b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads]
            data.append(b"data: [DONE]\n\n")
            frames = self._events[key] = [b"%x\r\n%b\r\n" % (len(d), d) for d in data]
        return frames


_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")


def _response(status: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 %b\r\ncontent-type: %b\r\ncontent-length: %d\r\n\r\n%b"
            % (status.encode(), content_type, len(body), body))


class Connection(asyncio.Protocol):
    def __init__(self, server: Upstream) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence a cast, not a check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None and self._one_request():
            pass

    def _one_request(self) -> bool:
        """Answer one complete request from the buffer; False when more bytes are needed."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buf[:end]).split(b"\r\n")
        method, path = head[0].split(b" ")[:2]
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parsed = _dechunk(self.buf, start)
            if parsed is None:
                return False
            body, used = parsed
        else:
            size = int(headers.get(b"content-length", b"0"))
            if len(self.buf) < start + size:
                return False
            body, used = bytes(self.buf[start:start + size]), start + size
        del self.buf[:used]
        self._answer(method, path, body)
        if headers.get(b"connection", b"").lower() == b"close" and self.transport is not None:
            self.transport.close()
            self.transport = None
        return True

    def _answer(self, method: bytes, path: bytes, body: bytes) -> None:
        t = self.transport
        assert t is not None
        path = path.split(b"?", 1)[0]
        if method == b"POST" and path == b"/v1/chat/completions":
            try:
                req = orjson.loads(body)
            except orjson.JSONDecodeError:
                t.write(_response("400 Bad Request", b'{"error":{"message":"bad json"}}'))
                return
            model = str(req.get("model") or "bench")
            self.server.served += 1
            if req.get("stream"):
                include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
                t.write(_STREAM_HEAD)
                for frame in self.server.replies.events(model, include_usage):
                    t.write(frame)  # one send per event, as a token-by-token server does
                t.write(b"0\r\n\r\n")
            else:
                t.write(_response("200 OK", self.server.replies.json(model)))
        elif path == b"/health":
            t.write(_response("200 OK", b""))
        elif path == b"/metrics":
            t.write(_response("200 OK", self.server.metrics(), b"text/plain; version=0.0.4"))
        elif path == b"/v1/models":
            t.write(_response("200 OK", orjson.dumps({"object": "list", "data": [
                {"id": self.server.model, "object": "model", "owned_by": "bench"}]})))
        else:
            t.write(_response("404 Not Found", b'{"error":{"message":"not found"}}'))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _dechunk(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    out = bytearray()
    pos = start
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", pos - 2)
            return (bytes(out), trailer_end + 4) if trailer_end >= 0 else None
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos:pos + size]
        pos += size + 2


@dataclass
class Upstream:
    replies: Replies
    model: str = "bench"
    served: int = 0

    def metrics(self) -> bytes:
        labels = f'{{model_name="{self.model}"}}'
        return (f"vllm:num_requests_running{labels} 0.0\n"
                f"vllm:num_requests_waiting{labels} 0.0\n"
                f"vllm:kv_cache_usage_perc{labels} 0.0\n"
                f"vllm:request_success_total{labels} {self.served}.0\n").encode()

    async def serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Connection(self), sock=sock, backlog=4096)
        async with server:
            await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9300)
    ap.add_argument("--fd", type=int, default=None, help="an inherited listening socket")
    ap.add_argument("--model", default="bench", help="the name /v1/models lists")
    ap.add_argument("--tokens", type=int, default=16, help="completion tokens per answer")
    args = ap.parse_args(argv)
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(4096)
    sock.setblocking(False)
    upstream = Upstream(Replies(args.tokens), model=args.model)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a frugate dependency
            asyncio.run(upstream.serve(sock))
        else:
            uvloop.run(upstream.serve(sock))


if __name__ == "__main__":
    main()
