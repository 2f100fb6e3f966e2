"""The admission hot path's own Redis link, against the real Redis (and a server that hangs)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.accounting.resp import RespLink
from gateway.state import connect_redis

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def link() -> AsyncIterator[RespLink]:
    client = connect_redis(REDIS_URL)
    name = "fgtest-" + secrets.token_hex(4)
    made = RespLink.from_client(client)
    assert made is not None
    made.name = name
    try:
        yield made
    finally:
        await made.close()
        await client.aclose()


async def test_concurrent_callers_each_get_their_own_replies(link: RespLink) -> None:
    key = "fgtest-resp-" + secrets.token_hex(4)

    async def one(i: int) -> list[object]:
        return await link.execute(("ECHO", f"m{i}"), ("INCR", key))

    try:
        replies = await asyncio.gather(*(one(i) for i in range(300)))
    finally:
        await link.execute(("DEL", key))
    assert [r[0] for r in replies] == [f"m{i}".encode() for i in range(300)]
    assert sorted(r[1] for r in replies) == list(range(1, 301))  # type: ignore[type-var]


async def test_an_error_reply_is_a_value_and_the_link_goes_on(link: RespLink) -> None:
    err, ok = await link.execute(("EVALSHA", "0" * 40, 0), ("PING",))
    assert isinstance(err, ResponseError) and str(err).startswith("NOSCRIPT")
    assert ok == b"PONG"


async def test_a_killed_connection_fails_in_flight_calls_and_the_next_call_reconnects(
        link: RespLink) -> None:
    assert await link.execute(("PING",)) == [b"PONG"]
    admin = connect_redis(REDIS_URL)
    try:
        blocked = asyncio.ensure_future(link.execute(("BLPOP", "fgtest-never-" + link.name, 5)))
        await asyncio.sleep(0.1)
        for c in await admin.client_list():
            if c["name"] == link.name:
                await admin.client_kill_filter(_id=c["id"])
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(blocked, 2)
    finally:
        await admin.aclose()
    assert await link.execute(("PING",)) == [b"PONG"]


@pytest.mark.parametrize("answers_greeting", [False, True], ids=["at-connect", "in-flight"])
async def test_a_server_that_stops_answering_times_out(answers_greeting: bool) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def hangs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read(1 << 16)  # CLIENT SETNAME
        if answers_greeting:
            writer.write(b"+OK\r\n")
        await reader.read(1 << 16)  # then nothing is ever answered

    server = await asyncio.start_server(hangs, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = RespLink("127.0.0.1", port, timeout_s=0.5)
    try:
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(link.execute(("PING",)), 5)
    finally:
        await link.close()
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_refused_connection_is_a_redis_connection_error() -> None:
    link = RespLink("127.0.0.1", 1, timeout_s=0.5)
    with pytest.raises(RedisConnectionError):
        await link.execute(("PING",))
    await link.close()


async def test_the_link_uses_the_clients_database() -> None:
    client = connect_redis("redis://127.0.0.1:6379/3")
    link = RespLink.from_client(client)
    assert link is not None and link.db == 3
    key = "fgtest-resp-db-" + secrets.token_hex(4)
    try:
        await link.execute(("SET", key, "x", "EX", 60))
        assert await client.get(key) == b"x"
    finally:
        await client.delete(key)
        await link.close()
        await client.aclose()
