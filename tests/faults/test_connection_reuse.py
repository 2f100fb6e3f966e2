"""A client that leaves late must not touch the upstream connection another request now uses.

Upstream connections are kept alive and reused. A request remembers its connection (its "tap")
so that, if its client leaves, the connection can be half-closed and the replica aborts. Once
the response is complete the connection goes back to the pool and may carry the next request:
a late half-close (the client hangs up while its request settles) must then do nothing, and
closing twice must not put the connection in the pool twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from gateway.upstream.transport import HTTP11Transport, Origin, Tap
from workers.sim.process import SimServer

pytestmark = pytest.mark.faults

BODY = json.dumps({"model": "sim-small", "max_tokens": 30, "ignore_eos": True, "stream": True,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
HEADERS = b"content-type: application/json\r\n"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(model="sim-small", profile="fast", itl_ms=5.0) as s:
        yield s


async def _post(transport: HTTP11Transport, origin: Origin, tap: Tap) -> object:
    token = tap.arm()
    try:
        return await transport.post(origin, b"/v1/chat/completions", HEADERS, BODY, 5, 5)
    finally:
        Tap.disarm(token)


def test_a_late_half_close_leaves_the_next_request_alone(sim: SimServer) -> None:
    async def go() -> bytes:
        transport, origin = HTTP11Transport(), Origin(sim.url)
        first_tap = Tap()
        first = await _post(transport, origin, first_tap)
        await first.read(5)  # type: ignore[attr-defined]
        first.release()  # type: ignore[attr-defined]  # complete: back to the pool
        second = await _post(transport, origin, Tap())  # reuses the same connection
        assert second is first, "keep-alive reuse (the premise of this test)"
        assert not first_tap.half_close()  # the first client leaves late: nothing to close
        body = await second.read(5)  # type: ignore[attr-defined]
        second.release()  # type: ignore[attr-defined]
        await transport.aclose()
        return body  # type: ignore[no-any-return]

    body = asyncio.run(go())
    assert body.rstrip().endswith(b"data: [DONE]"), body[-200:]
    assert sim.stats()["aborted"] == 0


def test_releasing_twice_pools_a_connection_once(sim: SimServer) -> None:
    async def go() -> None:
        transport, origin = HTTP11Transport(), Origin(sim.url)
        conn = await _post(transport, origin, Tap())
        await conn.read(5)  # type: ignore[attr-defined]
        conn.release()  # type: ignore[attr-defined]
        conn.release()  # type: ignore[attr-defined]
        a = await _post(transport, origin, Tap())
        b = await _post(transport, origin, Tap())
        assert a is not b, "one connection handed to two requests at once"
        for c in (a, b):
            assert (await c.read(5)).rstrip().endswith(b"[DONE]")  # type: ignore[attr-defined]
            c.release()  # type: ignore[attr-defined]
        await transport.aclose()

    asyncio.run(go())
