"""Who may call what: admin routes take the master key only; keys are stored as hashes only;
secrets are compared in constant time; CORS is off unless configured."""

from __future__ import annotations

import ast
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.accounting.webhooks import sign, verify
from gateway.tenancy.keys import hash_key
from tests.gateway.harness import GatewayServer, pool, settings_for
from tests.gateway.procs import REDIS_URL
from tests.security.conftest import MASTER
from workers.sim.process import SimServer

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def _admin_operations(gw: GatewayServer) -> list[tuple[str, str]]:
    spec = httpx.get(gw.url + "/openapi.json", timeout=10).json()
    ops = []
    for path, methods in spec["paths"].items():
        if path.startswith("/admin"):
            concrete = re.sub(r"\{scopes\}", "teams", path)
            concrete = re.sub(r"\{[^}]+\}", "nope", concrete)
            ops += [(m.upper(), concrete) for m in methods]
    return ops


def test_every_admin_route_takes_the_master_key_only(gw: GatewayServer) -> None:
    team_key = gw.make_key()
    ops = _admin_operations(gw)
    assert len(ops) >= 25  # the whole admin API, not a sample
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        for method, path in ops:
            for auth, status in ((None, 401), ("Bearer fk-not-the-master", 401),
                                 (f"Basic {MASTER}", 401), (f"Bearer {MASTER}x", 401),
                                 (f"Bearer {team_key}", 403)):
                headers = {"authorization": auth} if auth else {}
                r = http.request(method, path, headers=headers, json={})
                assert r.status_code == status, (method, path, auth, r.status_code, r.text)
                assert r.json()["error"]["type"] in ("authentication_error", "permission_error")
            r = http.request(method, path, headers={"authorization": f"Bearer {MASTER}"},
                             json={})
            assert r.status_code not in (401, 403), (method, path, r.text)


def test_the_master_key_is_not_a_virtual_key(gw: GatewayServer) -> None:
    r = httpx.post(gw.base_url + "/chat/completions", timeout=10,
                   headers={"authorization": f"Bearer {MASTER}"},
                   json={"model": "small", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401


def test_no_key_plaintext_in_redis(sim: SimServer, embedder: Any, tmp_path: Path) -> None:
    """With Redis (admission counters, holds, the ledger stream), keys appear only as ids."""
    prefix = "fgt-sec-" + secrets.token_hex(4)
    settings = settings_for([pool("small", sim.url)], tmp_path, redis_url=REDIS_URL,
                            redis_prefix=prefix)
    with GatewayServer(settings, embedder) as gw:
        key = gw.make_key(rpm=1000, tpm=10**6)
        for stream in (False, True):
            r = httpx.post(gw.base_url + "/chat/completions", timeout=10,
                           headers={"authorization": f"Bearer {key}"},
                           json={"model": "small", "stream": stream, "max_tokens": 5,
                                 "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
    client = redis.Redis.from_url(REDIS_URL)
    try:
        dump = []
        for name in client.scan_iter(f"{prefix}*"):
            kind = client.type(name)
            dump.append(name)
            if kind == b"string":
                dump.append(client.get(name) or b"")
            elif kind == b"hash":
                dump += [x for kv in client.hgetall(name).items() for x in kv]
            elif kind == b"zset":
                dump += [m for m, _ in client.zrange(name, 0, -1, withscores=True)]
            elif kind == b"stream":
                dump += [repr(e).encode() for e in client.xrange(name)]
        blob = b"\n".join(dump)
        assert dump, "the gateway did write to Redis"
        assert key.encode() not in blob and key[3:].encode() not in blob
        assert hash_key(key).encode() not in blob
    finally:
        for name in client.scan_iter(f"{prefix}*"):
            client.delete(name)
        client.close()


# Looking a key up by its sha256 (a dict or an indexed column) is by design: the digest of a
# 240-bit random key reveals nothing useful, so `key_hash` is not on this list.
_SECRET_NAME = re.compile(r"(secret|master|password|signature|api_key|\btoken\b)", re.I)


def _secret_comparisons(tree: ast.AST) -> list[int]:
    """Lines comparing secret-looking values with == / != (a timing side channel)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(o, ast.Constant) and o.value is None for o in operands):
            continue  # `x == None`-style checks reveal nothing about a secret
        if all(isinstance(o, ast.Constant) for o in operands[1:]):
            continue  # comparing with a literal (a scheme name, a status) is not a secret check
        if any(_SECRET_NAME.search(ast.unparse(o)) for o in operands):
            lines.append(node.lineno)
    return lines


def test_secrets_are_compared_in_constant_time() -> None:
    offenders = []
    for path in sorted(GATEWAY.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [f"{path.relative_to(GATEWAY.parent)}:{line}"
                      for line in _secret_comparisons(tree)]
    assert not offenders, f"secret compared with ==: {offenders}"
    # The two places that compare secrets at all use hmac.compare_digest.
    auth = (GATEWAY / "tenancy" / "auth.py").read_text()
    hooks = (GATEWAY / "accounting" / "webhooks.py").read_text()
    assert "hmac.compare_digest(hash_key(token), hash_key(master_key))" in auth
    assert "hmac.compare_digest(sign(secret, body), header)" in hooks


def test_the_scan_for_secret_comparisons_finds_them() -> None:
    bad = ast.parse("if token == master_key:\n    pass\nok = signature != expected\n")
    fine = ast.parse("if scheme.lower() == 'bearer' or key_id is None or api_key == None:\n"
                     "    pass\n")
    assert _secret_comparisons(bad) == [1, 3]
    assert _secret_comparisons(fine) == []


def test_webhook_signatures_bind_body_and_secret() -> None:
    body = b'{"event":"budget.soft_limit","spent_usd":"9.10"}'
    header = sign("s3cret", body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify("s3cret", body, header)
    assert not verify("s3cret", body.replace(b"9.10", b"0.10"), header)  # tampered body
    assert not verify("other", body, header)  # wrong secret
    assert not verify("s3cret", body, header.upper())
    assert not verify("s3cret", body, "")


def _preflight(gw: GatewayServer, origin: str) -> httpx.Response:
    return httpx.options(gw.base_url + "/chat/completions", timeout=10, headers={
        "origin": origin, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type"})


def test_cors_is_off_by_default(gw: GatewayServer) -> None:
    r = _preflight(gw, "https://evil.example")
    assert "access-control-allow-origin" not in r.headers
    key = gw.make_key()
    r = httpx.get(gw.base_url + "/models", timeout=10,
                  headers={"origin": "https://evil.example", "authorization": f"Bearer {key}"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


@pytest.fixture
def cors_gateway(sim: SimServer, embedder: Any, tmp_path: Path) -> Any:
    settings = settings_for([pool("small", sim.url)], tmp_path,
                            cors_origins=["https://app.example"])
    with GatewayServer(settings, embedder) as gw:
        yield gw


def test_cors_allows_only_the_configured_origins(cors_gateway: GatewayServer) -> None:
    ok = _preflight(cors_gateway, "https://app.example")
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert ok.headers.get("access-control-allow-credentials") != "true"
    evil = _preflight(cors_gateway, "https://evil.example")
    assert evil.headers.get("access-control-allow-origin") not in ("*", "https://evil.example")
