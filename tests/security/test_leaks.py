"""No secret in logs, error messages, headers, metrics or the OpenAPI document.

The secrets: the master key, virtual keys (valid, revoked, mistyped), the upstream API key the
gateway sends to vLLM, and the webhook signing secret. Upstream errors are the sneaky path: a
proxy in front of vLLM may echo the credentials it rejected, and the gateway relays upstream
error messages.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.harness import GatewayServer, pool, settings_for
from tests.security.conftest import MASTER, UPSTREAM_KEY, WEBHOOK_SECRET
from workers.sim.process import SimServer


class _Echo(BaseHTTPRequestHandler):
    """An upstream that rejects every completion and echoes the credentials it was sent."""

    def do_GET(self) -> None:  # health checks and metric scrapes
        self._send(200, b"")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        auth = self.headers.get("authorization", "")
        status = 401 if "401" in self.path or self.server.mode == 401 else 500  # type: ignore[attr-defined]
        body = {"error": {"message": f"Invalid credentials: {auth} (header was {auth!r})",
                          "type": "auth", "code": None, "param": None}}
        self._send(status, json.dumps(body).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(params=[401, 500], ids=["upstream-401", "upstream-500"])
def echo_upstream(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.mode = request.param  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _dump_logs(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__!r} {r.exc_text or ''}"
                     for r in caplog.records)


def _dump(r: httpx.Response) -> str:
    return f"{r.status_code} {dict(r.headers)!r} {r.text}"


def test_no_secret_leaks_through_errors_logs_or_metrics(
        sim: SimServer, echo_upstream: str, embedder: Any, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pools = [pool("small", sim.url, api_key=UPSTREAM_KEY),
             pool("echo", echo_upstream, api_key=UPSTREAM_KEY)]
    settings = settings_for(pools, tmp_path, webhook_secret=WEBHOOK_SECRET)
    seen: list[str] = []
    with GatewayServer(settings, embedder) as gw:
        key = gw.make_key()
        revoked = gw.make_key()
        r = httpx.post(gw.url + f"/admin/keys/{gw.state.directory.lookup(_h(revoked)).key_id}"
                       "/revoke", headers={"authorization": f"Bearer {MASTER}"}, timeout=10)
        assert r.status_code == 200
        mistyped = key[:-2] + ("xy" if not key.endswith("xy") else "zz")
        msg = [{"role": "user", "content": "hi"}]
        with httpx.Client(base_url=gw.url, timeout=15) as http:
            for auth in (f"Bearer {mistyped}", f"Bearer {revoked}", f"Bearer {MASTER}",
                         f"Token {key}", key, f"Bearer {key} {MASTER}"):
                for path in ("/v1/chat/completions", "/v1/models", "/v1/usage",
                             "/admin/tenants", "/v1/embeddings"):
                    r = http.post(path, headers={"authorization": auth},
                                  json={"model": "small", "messages": msg, "input": "x"})
                    seen.append(_dump(r))
            good = {"authorization": f"Bearer {key}"}
            for stream in (False, True):  # the upstream rejects the gateway's credentials
                r = http.post("/v1/chat/completions", headers=good, json={
                    "model": "echo", "messages": msg, "stream": stream})
                assert r.status_code >= 500, r.text
                seen.append(_dump(r))
            r = http.post("/v1/chat/completions", headers=good,
                          json={"model": "small", "messages": msg, "max_tokens": 3})
            assert r.status_code == 200
            seen += [_dump(http.get("/metrics")), _dump(http.get("/openapi.json")),
                     _dump(http.get("/readyz"))]
    blob = "\n".join(seen) + _dump_logs(caplog)
    assert "Invalid credentials" not in blob or "[redacted]" in blob
    for secret in (MASTER, key, revoked, mistyped, UPSTREAM_KEY, WEBHOOK_SECRET):
        assert secret not in blob, f"a secret ({secret[:6]}...) leaked"
    assert key[3:20] not in blob and UPSTREAM_KEY[3:20] not in blob  # not even in part


def _h(key: str) -> str:
    from gateway.tenancy.keys import hash_key

    return hash_key(key)


def test_settings_never_print_secrets(gw: GatewayServer) -> None:
    text = repr(gw.settings) + str(gw.settings.model_dump())
    for secret in (MASTER, WEBHOOK_SECRET):
        assert secret not in text
