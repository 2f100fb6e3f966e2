"""A lean Redis link for the admission hot path: one pipelined connection, hiredis parser.

redis-py spends about 0.15 ms of Python per command on this machine (pool checkout, health
checks, command packing, response callbacks), as much as the round trip itself. Admission and
settlement are one round trip each on every request, so they go through this link instead:
every caller writes its commands to the same socket and Redis, which runs commands one at a
time anyway, answers them in order, so replies are matched to callers first in, first out.
Everything else (streams, pub/sub, reports) stays on redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = tuple[Any, ...]


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.pending: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            fut = self.pending.popleft()[0]
            if not fut.done():  # a caller cancelled: its reply is read and dropped
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc if isinstance(exc, RedisTimeoutError) else RedisConnectionError(
            f"Redis connection lost: {exc or 'closed by the server'}")
        while self.pending:
            fut = self.pending.popleft()[0]
            if not fut.done():
                fut.set_exception(self.lost)

    def send(self, commands: list[Command]) -> list[asyncio.Future[Any]]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futs = [loop.create_future() for _ in commands]
        self.pending.extend((f, now) for f in futs)
        self.transport.write(b"".join(hiredis.pack_command(c) for c in commands))
        return futs


class RespLink:
    """`await link.execute(cmd, ...)` sends the commands in one write and returns their
    replies in order; an error reply comes back as a `ResponseError` value, not raised.

    A lost connection fails the commands in flight with redis-py's `ConnectionError`; the next
    call reconnects. A reply slower than `timeout_s` closes the connection the same way."""

    def __init__(self, host: str, port: int, *, db: int = 0, username: str | None = None,
                 password: str | None = None, timeout_s: float = 5.0,
                 connect_timeout_s: float = 2.0, name: str = "frugate-hot-path") -> None:
        self.host, self.port, self.db, self.name = host, port, db, name
        self.username, self.password = username, password
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    @classmethod
    def from_client(cls, client: aioredis.Redis) -> RespLink | None:
        """The same server, database and credentials as a redis-py client; None when the client
        talks over TLS or a Unix socket (it keeps serving those itself)."""
        pool = client.connection_pool
        if pool.connection_class is not aioredis.Connection:
            return None
        kw = pool.connection_kwargs
        return cls(kw.get("host", "localhost"), int(kw.get("port", 6379)), db=int(kw.get("db", 0)),
                   username=kw.get("username"), password=kw.get("password"),
                   timeout_s=kw.get("socket_timeout") or 5.0,
                   connect_timeout_s=kw.get("socket_connect_timeout") or 2.0)

    def send_now(self, *commands: Command) -> list[asyncio.Future[Any]] | None:
        """Write the commands at once and return their replies to come; None when not
        connected (then use `execute`, which connects)."""
        proto = self._proto
        if proto is None or proto.lost is not None:
            return None
        return proto.send(list(commands))

    async def execute(self, *commands: Command) -> list[Any]:
        proto = self._proto
        if proto is None or proto.lost is not None:
            proto = await self._connect()
        futs = proto.send(list(commands))
        return [await f for f in futs]

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is not None and self._proto.lost is None:
                return self._proto  # another caller reconnected while this one waited
            loop = asyncio.get_running_loop()
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for can drop a made connection
                async with asyncio.timeout(self.connect_timeout_s):
                    _, proto = await loop.create_connection(_Protocol, self.host, self.port)
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(
                    f"cannot connect to Redis at {self.host}:{self.port}: {exc}") from None
            assert proto.transport is not None
            try:
                async with asyncio.timeout(self.timeout_s):
                    replies = [await f for f in proto.send(self._hello())]
            except BaseException as exc:  # timed out, or the caller was cancelled: do not leak
                proto.transport.abort()
                if isinstance(exc, TimeoutError):
                    raise RedisTimeoutError(
                        f"no reply from Redis within {self.timeout_s:g} s") from None
                raise
            for reply in replies:
                if isinstance(reply, ResponseError):
                    proto.transport.close()
                    raise RedisConnectionError(f"Redis refused the connection: {reply}")
            self._proto = proto
            if self._watchdog is None:
                self._watch()
            return proto

    def _hello(self) -> list[Command]:
        hello: list[Command] = []
        if self.password:
            hello.append(("AUTH", self.username, self.password) if self.username
                         else ("AUTH", self.password))
        if self.db:
            hello.append(("SELECT", self.db))
        hello.append(("CLIENT", "SETNAME", self.name))  # shows in CLIENT LIST
        return hello

    def _watch(self) -> None:
        """Close a connection whose oldest reply is overdue (Redis hung or the network died)."""
        proto = self._proto
        if (proto is not None and proto.pending and proto.transport is not None
                and time.monotonic() - proto.pending[0][1] > self.timeout_s):
            proto.connection_lost(RedisTimeoutError(
                f"no reply from Redis within {self.timeout_s:g} s"))
            proto.transport.abort()
        self._watchdog = asyncio.get_running_loop().call_later(
            min(1.0, self.timeout_s / 2), self._watch)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
