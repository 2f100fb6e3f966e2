"""The network layer under each pool's httpx client: plain asyncio streams plus a "tap".

A `Tap` remembers which connection a request was written to. When the client goes away,
the gateway half-closes that connection: vLLM (uvicorn) reads EOF as a disconnect and aborts
the request, while whatever it already sent still reaches us. Billing then equals what the
upstream generated, with no race between "it finished" and "we hung up".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterable
from contextvars import ContextVar, Token
from typing import Any

import httpcore
import httpx

_current: ContextVar[Tap | None] = ContextVar("frugate_upstream_tap", default=None)


class Tap:
    """Which upstream connection one request went out on, and whether we abandoned it."""

    __slots__ = ("abandoned", "stream")

    def __init__(self) -> None:
        self.stream: AsyncioStream | None = None
        self.abandoned = False

    def arm(self) -> Token[Tap | None]:
        """Make requests sent from the current task report their connection here."""
        return _current.set(self)

    @staticmethod
    def disarm(token: Token[Tap | None]) -> None:
        _current.reset(token)

    def half_close(self) -> bool:
        """Mark the request abandoned and send EOF on its connection (False if none)."""
        self.abandoned = True
        stream = self.stream
        return stream is not None and stream.write_eof()


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout() from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        tap = _current.get()
        if tap is not None:
            tap.stream = self
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout() from None
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def write_eof(self) -> bool:
        if self._writer.is_closing() or not self._writer.can_write_eof():
            return False
        try:
            self._writer.write_eof()
        except OSError:
            return False
        return True

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError:
            raise httpcore.ConnectTimeout() from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "is_readable":  # httpcore: may this idle keep-alive connection be reused?
            return self._reader.at_eof() or self._writer.is_closing()
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> AsyncioStream:
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, local_addr=local,
                                                               limit=1 << 20)
        except TimeoutError:
            raise httpcore.ConnectTimeout() from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for opt in socket_options or ():
                sock.setsockopt(*opt)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> AsyncioStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        except TimeoutError:
            raise httpcore.ConnectTimeout() from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def pool_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An HTTP/1.1 keep-alive transport for one pool, on the tapped asyncio backend."""
    transport = httpx.AsyncHTTPTransport(limits=limits, http1=True, http2=False)
    # httpx builds its httpcore pool without a way to pass a network backend: swap the pool
    # for an identical one that has ours (the only reach into httpx internals, kept here).
    transport._pool = httpcore.AsyncConnectionPool(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=AsyncioBackend(),
    )
    return transport
