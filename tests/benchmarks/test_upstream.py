"""The fixed-response upstream speaks enough HTTP and OpenAI for httpx, the SDK and wrk."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from benchmarks.lib.targets import Target, start_upstream


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    t = start_upstream("fixed", tmp_path_factory.mktemp("up"), None, tokens=5)
    yield t
    t.close()


def test_json_answer_has_the_configured_length(upstream: Target) -> None:
    client = openai.OpenAI(base_url=upstream.base + "/v1", api_key="x")
    r = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
    assert r.model == "m1"
    assert r.usage is not None and r.usage.completion_tokens == 5
    assert r.choices[0].message.content is not None
    assert len(r.choices[0].message.content.split()) == 5


def test_stream_is_vllm_shaped(upstream: Target) -> None:
    client = openai.OpenAI(base_url=upstream.base + "/v1", api_key="x")
    chunks = list(client.chat.completions.create(
        model="m2", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    plain = list(client.chat.completions.create(
        model="m2", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert all(c.usage is None for c in plain)  # usage only when asked, as vLLM does


def test_chunked_body_pipelining_and_monitor_routes(upstream: Target) -> None:
    host, port = upstream.base.removeprefix("http://").split(":")
    body = b'{"model":"m3","messages":[]}'
    chunked = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
               b"\r\n%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
    plain = (b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
             b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(chunked + plain)  # three requests in one write
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert b'"model":"m3"' in data
    assert b"vllm:num_requests_waiting" in data


def test_unknown_path_and_bad_json(upstream: Target) -> None:
    assert httpx.get(upstream.base + "/nope").status_code == 404
    r = httpx.post(upstream.base + "/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400
    assert httpx.get(upstream.base + "/v1/models").json()["data"][0]["id"] == "bench"


def test_wrk_drives_it(upstream: Target, tmp_path: Path) -> None:
    pytest.importorskip("orjson")
    from benchmarks.lib import wrk

    try:
        wrk.wrk_path()
    except wrk.WrkMissing:
        pytest.skip("wrk is not installed")
    body = tmp_path / "b.json"
    body.write_text(json.dumps({"model": "bench", "messages": [], "stream": True}))
    run = wrk.run(upstream.url, body, connections=2, duration_s=1)
    assert run.ok and run.requests > 10
    assert 0 < run.p50_ms <= run.p99_ms <= run.max_ms
