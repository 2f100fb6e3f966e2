"""Bad input gets a clear 4xx in OpenAI's error shape, early, and never reaches a replica.

Oversized bodies (declared or streamed), absurd `max_tokens`, malformed JSON, wrong types, huge
message arrays, invalid UTF-8, deep nesting: each is refused with a 4xx whose body is
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.gateway.harness import GatewayServer, pool, settings_for
from workers.sim.process import SimServer

LIMIT = 256 * 1024
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(model="sim-small", profile="fast", max_model_len=4096) as s:
        yield s


@pytest.fixture(scope="module")
def gw(sim: SimServer, embedder: Any, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayServer]:
    settings = settings_for([pool("small", sim.url, max_context=4096)],
                            tmp_path_factory.mktemp("bad"),
                            limits={"max_body_bytes": LIMIT, "max_messages": 256,
                                    "max_tokens_ceiling": 4096})
    with GatewayServer(settings, embedder) as server:
        yield server


@pytest.fixture(scope="module")
def http(gw: GatewayServer) -> Iterator[httpx.Client]:
    key = gw.make_key()
    with httpx.Client(base_url=gw.url, timeout=30,
                      headers={"authorization": f"Bearer {key}"}) as client:
        yield client


def _error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"] and body["error"]["type"] == "invalid_request_error"
    return body["error"]  # type: ignore[no-any-return]


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "small", "messages": MSG, **fields}


BAD_CHAT: list[tuple[str, Any, str | None]] = [
    ("absurd max_tokens", _chat(max_tokens=10**9), "max_tokens"),
    ("max_tokens past the ceiling", _chat(max_tokens=4097), "max_tokens"),
    ("absurd max_completion_tokens", _chat(max_completion_tokens=2**62), "max_tokens"),
    ("zero max_tokens", _chat(max_tokens=0), "max_tokens"),
    ("negative max_tokens", _chat(max_tokens=-5), "max_tokens"),
    ("max_tokens as a string", _chat(max_tokens="many"), "max_tokens"),
    ("max_tokens as a float", _chat(max_tokens=10.5), "max_tokens"),
    ("messages as a string", _chat(messages="hello"), "messages"),
    ("messages empty", _chat(messages=[]), "messages"),
    ("a message that is a number", _chat(messages=[1]), "messages.0"),
    ("an unknown role", _chat(messages=[{"role": "wizard", "content": "x"}]), "messages.0.role"),
    ("content as a number", _chat(messages=[{"role": "user", "content": 5}]), None),
    ("model missing", {"messages": MSG}, "model"),
    ("model as a number", _chat(model=7), "model"),
    ("model empty", _chat(model=""), "model"),
    ("stream as a word", _chat(stream="yes please"), "stream"),
    ("temperature out of range", _chat(temperature=9), "temperature"),
    ("n absurd", _chat(n=10**6), "n"),
    ("top_logprobs absurd", _chat(top_logprobs=1000), "top_logprobs"),
    ("unknown response_format", _chat(response_format={"type": "yaml"}), "response_format"),
    ("frugate controls of the wrong shape", _chat(frugate={"cache": 3}), "frugate.cache"),
    ("unknown frugate control", _chat(frugate={"teleport": True}), "frugate.teleport"),
    ("too many messages", _chat(messages=MSG * 257), "messages"),
    ("prompt past the context", _chat(messages=[{"role": "user", "content": "word " * 5000}]),
     "messages"),
    ("a JSON array body", [1, 2, 3], None),
    ("a JSON string body", "hello", None),
    ("JSON null body", None, None),
]


@pytest.mark.parametrize(("case", "body", "param"), BAD_CHAT, ids=[c[0] for c in BAD_CHAT])
def test_bad_chat_bodies_are_clear_400s(http: httpx.Client, sim: SimServer, case: str,
                                        body: Any, param: str | None) -> None:
    before = sim.stats()["received"]
    err = _error(http.post("/v1/chat/completions", content=json.dumps(body)), 400)
    if param is not None:
        assert err["param"] == param, err
    assert sim.stats()["received"] == before, "refused before reaching a replica"


RAW_BODIES = [
    ("empty body", b""),
    ("truncated JSON", b'{"model": "small", "messages": ['),
    ("trailing garbage", b'{"model": "small", "messages": []} x'),
    ("single quotes", b"{'model': 'small'}"),
    ("invalid UTF-8 in a string", b'{"model": "small", "messages": [{"role": "user", '
                                  b'"content": "\xff\xfe bad"}]}'),
    ("invalid UTF-8 outside strings", b"\xc3\x28{}"),
    ("a lone surrogate escape", b'{"model": "small", "messages": [{"role": "user", '
                                b'"content": "\\ud800"}]}'),
    ("deep nesting", b'{"model": "small", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("a huge integer", b'{"model": "small", "messages": [], "max_tokens": '
                       + b"9" * 400 + b"}"),
    ("NaN", b'{"model": "small", "messages": [], "temperature": NaN}'),
]


@pytest.mark.parametrize(("case", "raw"), RAW_BODIES, ids=[c[0] for c in RAW_BODIES])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_malformed_bodies_are_clear_400s(http: httpx.Client, path: str, case: str,
                                         raw: bytes) -> None:
    _error(http.post(path, content=raw, headers={"content-type": "application/json"}), 400)


def test_huge_message_arrays_within_the_byte_limit(http: httpx.Client) -> None:
    # 8,000 one-character messages fit in 256 KiB but are far past max_messages.
    body = json.dumps(_chat(messages=[{"role": "user", "content": "x"}] * 8000),
                      separators=(",", ":")).encode()
    assert len(body) < LIMIT
    t0 = time.monotonic()
    err = _error(http.post("/v1/chat/completions", content=body), 400)
    assert err["param"] == "messages" and time.monotonic() - t0 < 5


def test_too_many_embedding_inputs_are_refused(http: httpx.Client) -> None:
    # Each costs a forward pass of the embedder: an unbounded list is a cheap way to burn CPU.
    body = {"model": "all-MiniLM-L6-v2", "input": ["x"] * 5000}
    t0 = time.monotonic()
    err = _error(http.post("/v1/embeddings", json=body), 400)
    assert err["param"] == "input" and time.monotonic() - t0 < 5


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_oversized_bodies_are_413(http: httpx.Client, path: str) -> None:
    big = json.dumps(_chat(messages=[{"role": "user", "content": "x" * (LIMIT + 10)}]))
    err = _error(http.post(path, content=big), 413)
    assert err["code"] == "payload_too_large"

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 16384):
            yield big[i:i + 16384].encode()

    _error(http.post(path, content=chunked()), 413)


def test_an_oversized_declared_body_is_refused_before_it_is_sent(gw: GatewayServer,
                                                                 http: httpx.Client) -> None:
    key = http.headers["authorization"].encode()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: " + key
                     + b"\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n"
                     b"\r\n{")
        head = sock.recv(4096)  # answered at once: the gigabyte is never read
    assert head.startswith(b"HTTP/1.1 413"), head[:200]


def test_bad_input_without_a_key_is_401_first(gw: GatewayServer) -> None:
    r = httpx.post(gw.base_url + "/chat/completions", content=b"\xff{not json", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_wrong_methods_and_paths_are_clean_4xx(http: httpx.Client) -> None:
    assert http.get("/v1/chat/completions").status_code == 405
    r = http.get("/v1/no-such-thing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = http.post("/admin/tenants", content=b"\xff")
    assert 400 <= r.status_code < 500


def test_the_gateway_still_serves_after_all_of_it(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=_chat(max_tokens=5))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
