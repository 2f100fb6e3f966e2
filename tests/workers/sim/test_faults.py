"""Aborts, failure injection and crashes, against simulator subprocesses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from workers.sim import SimServer

MESSAGES: list[Any] = [{"role": "user", "content": "Write a long story."}]


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> float:
    """Seconds until condition() held; fails after `timeout`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
    return time.monotonic() - start


def stream_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "sim-model",
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": 400,
        "ignore_eos": True,
        "logprobs": True,
        **extra,
    }


def test_stream_disconnect_is_an_abort_seen_within_a_second(timed: SimServer) -> None:
    before = timed.stats()["aborted"]
    received = 0
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST",
            timed.url + "/v1/chat/completions",
            json=stream_body(),
            headers={"x-request-id": "abort-1"},
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: {"):
                choice = json.loads(line[6:])["choices"][0]
                received += len((choice.get("logprobs") or {}).get("content") or [])
            if received >= 5:
                break
    seen_after = wait_for(lambda: timed.stats()["aborted"] == before + 1)
    assert seen_after < 1.0
    wait_for(lambda: timed.stats()["running"] == 0)
    record = timed.usage(request_id="abort-1")["recent"][0]
    assert record["status"] == "aborted" and record["finish_reasons"] == ["abort"]
    # The ledger holds what was written before the disconnect was noticed: at most a step more.
    assert received <= record["completion_tokens"] <= received + 2


def test_non_streaming_disconnect_is_an_abort(timed: SimServer) -> None:
    before = timed.stats()["aborted"]
    body = {"model": "sim-model", "messages": MESSAGES, "max_tokens": 200, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(timed.url + "/v1/chat/completions", json=body, timeout=0.3)
    wait_for(lambda: timed.stats()["aborted"] == before + 1, timeout=1.0)


def test_injected_error_rate(sim: SimServer) -> None:
    sim.faults(error_rate=1.0, error_status=503)
    try:
        with (
            openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as client,
            pytest.raises(openai.APIStatusError) as caught,
        ):
            client.chat.completions.create(model="sim-model", messages=MESSAGES)
    finally:
        sim.faults(reset=True)
    assert caught.value.status_code == 503
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == 503
    assert (
        httpx.post(
            sim.url + "/v1/chat/completions", json={"model": "sim-model", "messages": MESSAGES}
        ).status_code
        == 200
    )


@pytest.mark.parametrize("server", ["sim", "timed"])
def test_midstream_error_frame(server: str, request: pytest.FixtureRequest) -> None:
    target: SimServer = request.getfixturevalue(server)
    body = stream_body(sim={"fault": "midstream_error", "after_tokens": 6})
    response = httpx.post(
        target.url + "/v1/chat/completions",
        json=body,
        headers={"x-request-id": f"mid-{server}"},
        timeout=10,
    )
    frames = [f[6:] for f in response.text.split("\n\n") if f]
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])
    assert error["error"]["code"] == 500 and error["error"]["type"] == "InternalServerError"
    tokens = sum(len(json.loads(f)["choices"][0]["logprobs"]["content"]) for f in frames[1:-2])
    assert tokens == 6
    record = target.usage(request_id=f"mid-{server}")["recent"][0]
    assert record["status"] == "error" and record["completion_tokens"] == 6
    with openai.OpenAI(base_url=target.base_url, api_key="x", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="sim-model",
            messages=MESSAGES,
            stream=True,
            extra_body={"sim": {"fault": "midstream_error", "after_tokens": 3}},
        )
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass


@pytest.mark.parametrize("server", ["sim", "timed"])
def test_stall_until_the_client_gives_up(server: str, request: pytest.FixtureRequest) -> None:
    target: SimServer = request.getfixturevalue(server)
    before = target.stats()["aborted"]
    body = stream_body(sim={"fault": "stall", "after_tokens": 3})
    chunks = []
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream(
            "POST", target.url + "/v1/chat/completions", json=body, timeout=0.5
        ) as response,
    ):
        for line in response.iter_lines():
            chunks.append(line)
    assert any(line.startswith("data: {") for line in chunks)
    wait_for(lambda: target.stats()["aborted"] == before + 1, timeout=1.0)


@pytest.mark.parametrize("server", ["sim", "timed"])
def test_headers_go_out_at_once_and_the_first_chunk_with_the_first_token(
    server: str, request: pytest.FixtureRequest
) -> None:
    target: SimServer = request.getfixturevalue(server)
    body = stream_body(max_tokens=3, sim={"fault": "stall", "after_tokens": 0, "stall_ms": 400})
    start = time.monotonic()
    with httpx.stream("POST", target.url + "/v1/chat/completions", json=body, timeout=5) as r:
        headers_after = time.monotonic() - start
        first = next(line for line in r.iter_lines() if line)
        first_after = time.monotonic() - start
    assert r.status_code == 200 and headers_after < 0.3
    assert first_after >= 0.4
    assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"


def test_timed_stall_ends_after_stall_ms(timed: SimServer) -> None:
    body = {
        "model": "sim-model",
        "messages": MESSAGES,
        "max_tokens": 3,
        "ignore_eos": True,
        "sim": {"fault": "stall", "after_tokens": 1, "stall_ms": 400},
    }
    start = time.monotonic()
    response = httpx.post(timed.url + "/v1/chat/completions", json=body, timeout=5)
    assert response.status_code == 200 and time.monotonic() - start >= 0.4


def test_freeze_holds_every_request(timed: SimServer) -> None:
    timed.faults(freeze_ms=500)
    start = time.monotonic()
    response = httpx.post(
        timed.url + "/v1/chat/completions",
        timeout=5,
        json={"model": "sim-model", "messages": MESSAGES, "max_tokens": 2},
    )
    assert response.status_code == 200 and time.monotonic() - start >= 0.4


def test_unhealthy_flag(sim: SimServer) -> None:
    sim.faults(unhealthy=True)
    try:
        assert httpx.get(sim.url + "/health").status_code == 503
    finally:
        sim.faults(unhealthy=False)
    assert httpx.get(sim.url + "/health").status_code == 200


def test_kill_crash_and_restart_on_the_same_port() -> None:
    body = {"model": "sim-model", "messages": MESSAGES, "max_tokens": 2}
    with SimServer(profile="fast") as server:
        port = server.port
        server.kill()  # SIGKILL, as failover tests do
        assert not server.alive
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/health", timeout=1)
        server.start()
        assert server.port == port
        server.faults(crash=True)  # the process exits by itself
        wait_for(lambda: not server.alive, timeout=2.0)
        server.start()
        received = server.stats()["received"]
        server.faults(crash_after=received + 2)  # what --crash-after N sets at start-up
        for _ in range(2):
            assert httpx.post(server.url + "/v1/chat/completions", json=body).status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.post(server.url + "/v1/chat/completions", json=body, timeout=2)
        wait_for(lambda: not server.alive, timeout=2.0)
