"""Upstream faults: replica crashes, stalls past timeouts, 5xx bursts, slow clients.

Expected (issue 9): requests that had not started streaming are retried on another replica;
streams that break end with a well-formed error event then `[DONE]`; every request is settled
(no hold left open) and billed what the upstream produced; the gateway recovers by itself.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.tokens import count_text
from tests.faults.infra import error_frame, open_holds, settled, sse_events
from tests.gateway.harness import GatewayServer, pool, settings_for
from tests.gateway.money import ledger_rows, sim_usage
from workers.sim.process import SimServer

pytestmark = pytest.mark.faults

MSG = [{"role": "user", "content": "Tell me about fault tolerance."}]


def _gateway(sims: list[SimServer], tmp: Path, embedder: Any, **pool_extra: Any) -> GatewayServer:
    # No response cache: every request here must reach a replica.
    settings = settings_for([pool("small", *(s.url for s in sims), **pool_extra)], tmp,
                            cache={"enabled": False})
    return GatewayServer(settings, embedder)


def _rows(gw: GatewayServer) -> dict[str, dict[str, Any]]:
    n = gw.call(settled(gw.state), timeout=60)
    return {r["request_id"]: r for r in ledger_rows(gw.settings.sqlalchemy_url, expect=n)}


def _wait(cond: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def pair() -> Iterator[list[SimServer]]:
    sims = [SimServer(model="sim-small", profile="fast", itl_ms=2.0).start() for _ in range(2)]
    try:
        yield sims
    finally:
        for s in sims:
            s.close()


def test_replica_crash_mid_stream_ends_with_an_error_event(tmp_path: Path,
                                                           embedder: Any) -> None:
    with SimServer(model="sim-small", profile="fast", itl_ms=15.0,
                   output_tokens=(400, 400)) as sim, _gateway([sim], tmp_path, embedder) as gw:
        key = gw.make_key()
        body = {"model": "small", "messages": MSG, "stream": True, "max_tokens": 400}
        with httpx.Client(base_url=gw.base_url, timeout=30) as http, http.stream(
                "POST", "/chat/completions", json=body,
                headers={"authorization": f"Bearer {key}"}) as r:
            assert r.status_code == 200
            it = r.iter_raw()
            raw = next(it) + next(it)
            sim.kill()  # the replica dies with the stream half sent
            raw += b"".join(it)
            rid = r.headers["x-frugate-request-id"]
        err = error_frame(raw)
        assert err["type"] == "upstream_error" and err["code"] == "upstream_error", err
        received = "".join(
            (json.loads(e)["choices"][0]["delta"].get("content") or "")
            for e in sse_events(raw)[:-2])
        assert received, "some content was relayed before the crash"

        # The openai SDK sees a clear APIError (not a JSON or protocol error).
        sim.start()
        _wait(lambda: gw.state.pools["small"].healthy, what="replica readmitted")
        client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
        stream = client.chat.completions.create(model="small", messages=MSG,  # type: ignore[arg-type]
                                                stream=True, max_tokens=400)
        got = 0
        with pytest.raises(openai.APIError) as info:
            for _chunk in stream:
                got += 1
                if got == 3:
                    sim.kill()
        assert not isinstance(info.value, openai.APIStatusError)  # an in-band error, after 200
        assert "broke off" in info.value.message

        # The gateway recovers without a restart once the replica is back.
        sim.start()
        _wait(lambda: gw.state.pools["small"].healthy, what="replica readmitted")
        ok = client.chat.completions.create(model="small", messages=MSG, max_tokens=5)  # type: ignore[arg-type]
        assert ok.choices[0].message.content
        rows = _rows(gw)
    crashed = rows[rid]
    assert crashed["status"] == "upstream_error"
    # The replica died with its usage: the gateway bills what it relayed.
    assert crashed["completion_tokens"] == count_text(received)
    assert [r["status"] for r in rows.values()].count("upstream_error") == 2
    assert len(rows) == 3


def test_crash_before_the_first_byte_is_retried_on_another_replica(
        pair: list[SimServer], tmp_path: Path, embedder: Any) -> None:
    a, b = pair
    with _gateway(pair, tmp_path, embedder) as gw:
        key = gw.make_key()
        a.faults(crash_after=a.stats()["received"])  # exits when the next request arrives

        async def load() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=gw.base_url, timeout=30,
                                         headers={"authorization": f"Bearer {key}"}) as http:
                out = []
                for i in range(16):  # one at a time: each picks among the live replicas
                    out.append(await http.post("/chat/completions", json={
                        "model": "small", "messages": MSG, "max_tokens": 10,
                        "stream": i % 2 == 1}))
                return out

        responses = asyncio.run(load())
        assert not a.alive, "a request reached the crashing replica"
        assert [r.status_code for r in responses] == [200] * 16
        for r in responses[1::2]:
            assert sse_events(r.content)[-1] == b"[DONE]"
        rows = _rows(gw)
        usage = sim_usage(b)
    # Every request was served by b and billed exactly b's usage.
    assert {r.headers["x-frugate-request-id"] for r in responses} == set(rows) == set(usage)
    for rid, row in rows.items():
        assert (row["prompt_tokens"], row["completion_tokens"]) == usage[rid]


def test_stall_before_the_first_byte_times_out_and_is_retried(
        pair: list[SimServer], tmp_path: Path, embedder: Any) -> None:
    a, b = pair
    a.faults(stall_rate=1.0, stall_ms=0, stall_after_tokens=0)  # a hangs until we leave
    with _gateway(pair, tmp_path, embedder, timeouts={"first_byte_s": 0.5}) as gw:
        key = gw.make_key()

        async def load() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=gw.base_url, timeout=30,
                                         headers={"authorization": f"Bearer {key}"}) as http:
                return await asyncio.gather(*(http.post("/chat/completions", json={
                    "model": "small", "messages": MSG, "max_tokens": 10,
                    "stream": i % 2 == 1}) for i in range(10)))

        t0 = time.monotonic()
        responses = asyncio.run(load())
        elapsed = time.monotonic() - t0
        assert [r.status_code for r in responses] == [200] * 10
        assert a.stats()["aborted"] >= 1, "some attempts went to the stalled replica"
        assert elapsed < 10, elapsed
        rows = _rows(gw)
        usage_b = sim_usage(b)
    # Billed what b delivered; the abandoned attempt on a (prefill only) is not the client's.
    for r in responses:
        rid = r.headers["x-frugate-request-id"]
        assert rows[rid]["status"] == "ok"
        assert (rows[rid]["prompt_tokens"], rows[rid]["completion_tokens"]) == usage_b[rid]


@pytest.mark.parametrize(("timeouts", "code"), [
    ({"first_byte_s": 0.5, "total_s": 60}, "upstream_error"),  # no byte for a read timeout
    ({"first_byte_s": 30, "total_s": 1.0}, "upstream_timeout"),  # the whole stream's deadline
])
def test_stall_mid_stream_ends_with_an_error_event(timeouts: dict[str, float], code: str,
                                                   tmp_path: Path, embedder: Any) -> None:
    with SimServer(model="sim-small", profile="fast", itl_ms=2.0) as sim, \
            _gateway([sim], tmp_path, embedder, timeouts=timeouts) as gw:
        key = gw.make_key()
        t0 = time.monotonic()
        r = httpx.post(gw.base_url + "/chat/completions", timeout=30,
                       headers={"authorization": f"Bearer {key}"},
                       json={"model": "small", "messages": MSG, "stream": True,
                             "max_tokens": 50, "sim": {"fault": "stall", "after_tokens": 4}})
        assert r.status_code == 200 and time.monotonic() - t0 < 10
        err = error_frame(r.content)
        assert err["code"] == code, err
        rows = _rows(gw)
        usage = sim_usage(sim)
        rid = r.headers["x-frugate-request-id"]
        assert sim.stats()["aborted"] == 1, "the stalled sequence was aborted upstream"
    row = rows[rid]
    assert row["status"] in ("upstream_error", "timeout")
    assert (row["prompt_tokens"], row["completion_tokens"]) == usage[rid]
    assert row["completion_tokens"] >= 4  # what was generated before the stall


def test_a_5xx_burst_is_absorbed_then_reported_cleanly_then_recovered(
        pair: list[SimServer], tmp_path: Path, embedder: Any) -> None:
    a, b = pair
    with _gateway(pair, tmp_path, embedder) as gw:
        key = gw.make_key()

        async def burst(n: int) -> list[BaseException | None]:
            client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=key, max_retries=0)

            async def one(i: int) -> BaseException | None:
                try:
                    if i % 2:
                        s = await client.chat.completions.create(  # type: ignore[call-overload]
                            model="small", messages=MSG, max_tokens=8, stream=True)
                        async for _ in s:
                            pass
                    else:
                        await client.chat.completions.create(  # type: ignore[call-overload]
                            model="small", messages=MSG, max_tokens=8)
                except openai.APIError as exc:
                    return exc
                return None

            async with client:
                return await asyncio.gather(*(one(i) for i in range(n)))

        a.faults(error_rate=1.0, error_status=503)  # one replica fails everything
        assert asyncio.run(burst(30)) == [None] * 30

        b.faults(error_rate=1.0, error_status=500)  # now both: clean 5xx, nothing else
        failures = asyncio.run(burst(10))
        assert all(isinstance(f, openai.APIStatusError) for f in failures), failures
        for f in failures:
            assert isinstance(f, openai.APIStatusError)
            assert f.status_code in (502, 503), f
            assert isinstance(f.body, dict) and f.body["type"] in (
                "upstream_error", "service_unavailable"), f.body
            assert "Simulated" in f.message or "replica" in f.message
            if f.status_code == 503:
                assert f.response.headers.get("retry-after") == "1"

        a.faults(reset=True)
        b.faults(reset=True)
        _wait(lambda: all(r.available() for r in gw.state.pools["small"].replicas),
              what="both replicas readmitted")
        assert asyncio.run(burst(20)) == [None] * 20
        assert gw.call(open_holds(gw.state)) == 0
        rows = _rows(gw)
    statuses = [r["status"] for r in rows.values()]
    assert statuses.count("ok") == 50 and statuses.count("error") == 10
    assert all(r["cost_micros"] == 0 for r in rows.values() if r["status"] == "error")


def _raw_post(port: int, key: str, body: dict[str, Any], rcvbuf: int = 4096) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    data = json.dumps(body).encode()
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer "
                 + key.encode() + b"\r\ncontent-type: application/json\r\ncontent-length: "
                 + str(len(data)).encode() + b"\r\nconnection: close\r\n\r\n" + data)
    return sock


def _unchunk(raw: bytes) -> tuple[dict[str, str], bytes]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2:]
    return headers, body


def test_slow_readers_get_whole_streams_without_slowing_anyone(tmp_path: Path,
                                                                embedder: Any) -> None:
    with SimServer(model="sim-small", profile="fast", itl_ms=0.5, max_model_len=16384) as sim, \
            _gateway([sim], tmp_path, embedder) as gw:
        key = gw.make_key()
        slow = [_raw_post(gw.port, key, {"model": "small", "messages": MSG, "stream": True,
                                          "max_tokens": 1500, "ignore_eos": True})
                for _ in range(3)]
        got = [b""] * 3
        latencies: list[float] = []

        async def others() -> None:
            async with httpx.AsyncClient(base_url=gw.base_url, timeout=30,
                                         headers={"authorization": f"Bearer {key}"}) as http:
                for _ in range(20):
                    t0 = time.monotonic()
                    r = await http.post("/chat/completions", json={
                        "model": "small", "messages": MSG, "max_tokens": 10})
                    assert r.status_code == 200
                    latencies.append(time.monotonic() - t0)

        async def read_slowly(i: int) -> None:
            sock = slow[i]
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            while chunk := await loop.sock_recv(sock, 1024):
                got[i] += chunk
                await asyncio.sleep(0.01)  # about 100 KB/s
            sock.close()

        async def main() -> None:
            await asyncio.gather(others(), *(read_slowly(i) for i in range(3)))

        asyncio.run(main())
        rows = _rows(gw)
        usage = sim_usage(sim)
    assert max(latencies) < 2.0, latencies
    for raw in got:
        headers, body = _unchunk(raw)
        events = sse_events(body)
        assert events[-1] == b"[DONE]"
        rid = headers["x-frugate-request-id"]
        assert rows[rid]["status"] == "ok" and rows[rid]["completion_tokens"] == 1500
        assert (rows[rid]["prompt_tokens"], rows[rid]["completion_tokens"]) == usage[rid]


def test_a_reader_that_stops_reading_is_cut_at_the_deadline(tmp_path: Path,
                                                             embedder: Any) -> None:
    with SimServer(model="sim-small", profile="fast", itl_ms=1.0, max_model_len=65536) as sim, \
            _gateway([sim], tmp_path, embedder, timeouts={"total_s": 1.0}) as gw:
        key = gw.make_key()
        sock = _raw_post(gw.port, key, {"model": "small", "messages": MSG, "stream": True,
                                        "max_tokens": 30000, "ignore_eos": True})
        raw = sock.recv(1024)
        time.sleep(2.0)  # not reading, past the stream's deadline
        assert gw.call(open_holds(gw.state)) == 0, "settled while the client still sat there"
        assert [r.in_flight for r in gw.state.pools["small"].replicas] == [0]
        assert sim.stats()["running"] == 0, "the upstream sequence was stopped"
        sock.settimeout(10)
        while chunk := sock.recv(65536):
            raw += chunk
        sock.close()
        headers, body = _unchunk(raw)
        err = error_frame(body)
        assert err["code"] == "upstream_timeout"
        rows = _rows(gw)
        usage = sim_usage(sim)
    rid = headers["x-frugate-request-id"]
    assert rows[rid]["status"] == "timeout"
    assert (rows[rid]["prompt_tokens"], rows[rid]["completion_tokens"]) == usage[rid]


def test_a_slow_upload_does_not_block_other_requests(tmp_path: Path, embedder: Any) -> None:
    with SimServer(model="sim-small", profile="fast") as sim, \
            _gateway([sim], tmp_path, embedder) as gw:
        key = gw.make_key()
        body = json.dumps({"model": "small", "messages": MSG, "max_tokens": 5}).encode()
        sock = socket.create_connection(("127.0.0.1", gw.port))
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer "
                     + key.encode() + b"\r\ncontent-type: application/json\r\ncontent-length: "
                     + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n")
        with httpx.Client(base_url=gw.base_url, timeout=10,
                          headers={"authorization": f"Bearer {key}"}) as http:
            for i in range(0, len(body), 8):  # a byte trickle over about a second
                sock.sendall(body[i:i + 8])
                t0 = time.monotonic()
                r = http.post("/chat/completions", json={"model": "small", "messages": MSG,
                                                         "max_tokens": 5})
                assert r.status_code == 200 and time.monotonic() - t0 < 1.0
        sock.settimeout(10)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
        sock.close()
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    assert b'"chat.completion"' in raw
