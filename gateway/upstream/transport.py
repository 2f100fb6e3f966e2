"""The HTTP/1.1 transport under each pool's httpx client, and the "tap" on its connections.

`HTTP11Transport` replaces httpcore + h11 under `httpx.AsyncClient`: the same client API at a
fraction of the CPU per request (asyncio protocols and `httptools`, the C parser uvicorn uses;
no per-request locks). It speaks what vLLM needs: HTTP/1.1 (plain or TLS), Content-Length
request bodies, Content-Length or chunked responses, keep-alive.

A `Tap` remembers which connection a request was written to. When the client goes away, the
gateway half-closes that connection: vLLM (uvicorn) reads EOF as a disconnect and aborts the
request, while whatever it already sent still reaches us. Billing then equals what the upstream
generated, with no race between "it finished" and "we hung up".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator
from contextvars import ContextVar, Token
from typing import Any

import httptools
import httpx

_current: ContextVar[Tap | None] = ContextVar("frugate_upstream_tap", default=None)


def current_tap() -> Tap | None:
    return _current.get()


class Tap:
    """Which upstream connection one request went out on, and whether we abandoned it."""

    __slots__ = ("abandoned", "conn")

    def __init__(self) -> None:
        self.conn: Any = None  # anything with write_eof() -> bool
        self.abandoned = False

    @property
    def stream(self) -> Any:
        return self.conn

    def arm(self) -> Token[Tap | None]:
        """Make requests sent from the current task report their connection here."""
        return _current.set(self)

    @staticmethod
    def disarm(token: Token[Tap | None]) -> None:
        _current.reset(token)

    def half_close(self) -> bool:
        """Mark the request abandoned and send EOF on its connection (False if none)."""
        self.abandoned = True
        conn = self.conn
        return conn is not None and bool(conn.write_eof())


class Exchange(asyncio.Protocol):
    """One keep-alive connection and the request/response exchange on it now.

    Responses are parsed as they arrive; `body()`/`read()` consume the body and
    `release()` hands the connection back to its pool (or closes it if not fully read).
    """

    def __init__(self, pool: _HostPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reusable = False
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._more = asyncio.Event()
        self._done = False
        self._error: BaseException | None = None
        self._paused = False
        self._eof_sent = False  # half-closed: never back to the pool
        self._in_use = False  # between start() and release()/close()
        self.tap: Tap | None = None  # the request using this connection now

    # asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP response: {exc}"))
            self.close()
        if len(self._chunks) > 64 and not self._paused and self.transport is not None:
            self._paused = True  # the reader is slow: stop reading until it catches up
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._done:
            self._fail(httpx.RemoteProtocolError(
                "the upstream closed the connection before the response was complete"))

    # httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._more.set()

    def on_message_complete(self) -> None:
        self._done = True
        self.reusable = self.parser.should_keep_alive()
        self._more.set()

    # request / response ---------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
        self._more.set()

    def start(self, head: bytes, body: bytes) -> None:
        self._status, self._headers = 0, []
        self._chunks.clear()
        self._done, self._error = False, None
        self.reusable = False
        self._in_use = True
        self._head = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)

    async def head(self, wait_s: float | None) -> None:
        assert self._head is not None
        try:
            async with asyncio.timeout(wait_s):
                await self._head
        except TimeoutError:
            self.close()
            raise httpx.ReadTimeout("timed out waiting for the upstream response") from None

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self._headers

    async def read(self, wait_s: float | None) -> bytes:
        parts = [c async for c in self.body(wait_s)]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def body(self, wait_s: float | None) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                yield self._chunks.popleft()
                if self._paused and len(self._chunks) < 16 and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
            if self._done:
                return
            if self._error is not None:
                raise self._error
            self._more.clear()
            try:
                async with asyncio.timeout(wait_s):
                    await self._more.wait()
            except TimeoutError:
                self.close()
                raise httpx.ReadTimeout("timed out reading the upstream response") from None

    def write_eof(self) -> bool:
        t = self.transport
        if t is None or t.is_closing() or not t.can_write_eof():
            return False
        self._eof_sent = True
        try:
            t.write_eof()
        except OSError:
            return False
        return True

    def close(self) -> None:
        self._detach()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def release(self) -> None:
        """Back to the pool if the response was read to its end and the server allows it.

        Once per request: a second call (or a late half-close from a client that left after
        its response was complete) must not touch the connection the next request uses.
        """
        if not self._in_use:
            return
        self._detach()
        if self._done and self.reusable and not self.closed and not self._eof_sent:
            self.pool.idle.append(self)
        else:
            self.close()

    def _detach(self) -> None:
        self._in_use = False
        tap, self.tap = self.tap, None
        if tap is not None and tap.conn is self:
            tap.conn = None


class _Body(httpx.AsyncByteStream):
    def __init__(self, conn: Exchange, wait_s: float | None) -> None:
        self.conn = conn
        self.wait_s = wait_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.conn.body(self.wait_s):
            yield chunk

    async def aclose(self) -> None:
        self.conn.release()


class Origin:
    """A replica's scheme, host and port, parsed once."""

    __slots__ = ("host", "netloc", "port", "scheme")

    def __init__(self, url: str) -> None:
        u = httpx.URL(url)
        self.scheme, self.host, self.port = u.scheme, u.host, u.port
        self.netloc = u.netloc


class _HostPool:
    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.idle: deque[Exchange] = deque()

    async def acquire(self, wait_s: float | None) -> Exchange:
        while self.idle:
            conn = self.idle.pop()  # most recently used: least likely to have timed out
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(wait_s):
                _, conn = await loop.create_connection(
                    lambda: Exchange(self), self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connect to {self.host}:{self.port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"connect to {self.host}:{self.port}: {exc}") from exc
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class HTTP11Transport(httpx.AsyncBaseTransport):
    """httpx transport for vLLM replicas (http:// or https://)."""

    def __init__(self, max_idle_per_host: int = 512) -> None:
        self.max_idle = max_idle_per_host
        self._pools: dict[tuple[str, str, int], _HostPool] = {}
        self._tls: ssl.SSLContext | None = None

    def _pool(self, scheme: str, host: str, port: int | None) -> _HostPool:
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
        port = port or (443 if scheme == "https" else 80)
        pool = self._pools.get((scheme, host, port))
        if pool is None:
            tls = None
            if scheme == "https":
                tls = self._tls = self._tls or ssl.create_default_context()
            pool = self._pools[(scheme, host, port)] = _HostPool(host, port, tls)
        return pool

    async def _exchange(self, pool: _HostPool, head: bytes, body: bytes,
                        connect_s: float | None, read_s: float | None) -> Exchange:
        """Send one request; return its connection once the response headers are in."""
        conn = await pool.acquire(connect_s)
        conn.start(head, body)
        tap = _current.get()
        if tap is not None:
            tap.conn, conn.tap = conn, tap
        try:
            await conn.head(read_s)
        except BaseException:
            conn.close()
            raise
        if len(pool.idle) > self.max_idle:
            pool.idle.popleft().close()
        return conn

    async def post(self, origin: Origin, path: bytes, headers: bytes, body: bytes,
                   connect_s: float | None, read_s: float | None) -> Exchange:
        """The hot path's request, without building httpx Request/Response objects.

        `headers` are complete header lines (each ending in CRLF) other than Host and
        Content-Length. Read the answer with `.status`, `.body()` or `.read()`, then `.release()`.
        """
        head = (b"POST " + path + b" HTTP/1.1\r\nhost: " + origin.netloc + b"\r\n" + headers
                + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
        pool = self._pool(origin.scheme, origin.host, origin.port)
        return await self._exchange(pool, head, body, connect_s, read_s)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        pool = self._pool(url.scheme, url.host, url.port)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = request.content if isinstance(request.stream, httpx.ByteStream) else \
            await request.aread()
        conn = await self._exchange(pool, _head(request, len(body)), body,
                                    timeouts.get("connect"), timeouts.get("read"))
        return httpx.Response(conn.status, headers=conn.headers,
                              stream=_Body(conn, timeouts.get("read")),
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()


def _head(request: httpx.Request, length: int) -> bytes:
    url = request.url
    target = url.raw_path
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
    has_host = False
    for k, v in request.headers.raw:
        lk = k.lower()
        if lk in (b"content-length", b"transfer-encoding", b"connection"):
            continue
        has_host = has_host or lk == b"host"
        lines.append(k + b": " + v)
    if not has_host:
        lines.append(b"host: " + url.netloc)
    lines.append(b"content-length: " + str(length).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"
