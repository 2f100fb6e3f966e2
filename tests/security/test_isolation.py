"""Tenants and teams stay apart: a team key sees its own team's data only; RAG collections and
cached answers never cross tenants.

Also covered elsewhere: `/v1/feedback` only for the team's own requests and `/v1/usage`
forced to the caller's team (tests/gateway/test_reports.py), collection visibility rules of
the RAG API (tests/gateway/test_rag_api.py).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.gateway.harness import GatewayServer

MSG = [{"role": "user", "content": "What is the refund window for enterprise customers?"}]
DOC = ("Refund policy. Enterprise customers may ask for a refund within 45 days of purchase. "
       "The secret codeword for the Zanzibar account is PERIWINKLE-42.")


def _client(gw: GatewayServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=gw.url, timeout=30, headers={"authorization": f"Bearer {key}"})


def test_a_team_key_sees_only_its_own_usage(gw: GatewayServer) -> None:
    mine = gw.make_key(tenant="iso-a", team="red")
    theirs = gw.make_key(tenant="iso-b", team="blue")
    their_id = gw.state.directory.lookup(_h(theirs)).key_id  # type: ignore[union-attr]
    with _client(gw, theirs) as c:
        assert c.post("/v1/chat/completions", json={"model": "small", "messages": MSG,
                                                    "max_tokens": 5}).status_code == 200
    with _client(gw, mine) as c:
        assert c.post("/v1/chat/completions", json={"model": "small", "messages": MSG,
                                                    "max_tokens": 5}).status_code == 200
        gw.call(gw.state.ledger.flush())
        own = c.get("/v1/usage", params={"group_by": "tenant,team,key"}).json()
        probe = c.get("/v1/usage", params={"key": their_id, "group_by": "key"}).json()
    assert own["totals"]["requests"] == 1 and len(own["rows"]) == 1, own  # not theirs
    assert probe["rows"] == [] and probe["totals"]["requests"] == 0, probe


def _h(key: str) -> str:
    from gateway.tenancy.keys import hash_key

    return hash_key(key)


def test_rag_collections_never_cross_tenants(gw: GatewayServer) -> None:
    owner = gw.make_key(tenant="rag-a", team="docs", scopes=["rag:write"])
    other_tenant = gw.make_key(tenant="rag-b", team="docs", scopes=["rag:write"])
    with _client(gw, owner) as a:
        made = a.post("/v1/collections", json={"name": "handbook", "scope": "tenant"})
        assert made.status_code == 201, made.text
        cid = made.json()["id"]
        doc = a.post(f"/v1/collections/{cid}/documents", json={"text": DOC, "title": "refunds"})
        assert doc.status_code == 201, doc.text
        hits = a.post(f"/v1/collections/{cid}/search", json={"query": "refund window"}).json()
        assert hits["data"], "the owner finds its own document"
        grounded = a.post("/v1/chat/completions", json={
            "model": "small", "messages": MSG, "max_tokens": 5,
            "frugate": {"rag": {"collection": cid}}})
        assert grounded.status_code == 200 and grounded.json()["frugate"]["citations"]
    with _client(gw, other_tenant) as b:
        listed = b.get("/v1/collections").json()["data"]
        assert cid not in [c["id"] for c in listed]
        for ref in (cid, "handbook"):
            for method, path, body in (
                    ("GET", f"/v1/collections/{ref}", None),
                    ("POST", f"/v1/collections/{ref}/search", {"query": "codeword"}),
                    ("GET", f"/v1/collections/{ref}/documents", None),
                    ("POST", f"/v1/collections/{ref}/documents", {"text": "planted"}),
                    ("DELETE", f"/v1/collections/{ref}", None),
                    ("GET", f"/v1/vector_stores/{ref}", None)):
                r = b.request(method, path, json=body)
                assert r.status_code == 404, (method, path, r.status_code, r.text)
                assert "PERIWINKLE" not in r.text
            r = b.post("/v1/chat/completions", json={
                "model": "small", "messages": MSG, "max_tokens": 5,
                "frugate": {"rag": {"collection": ref}}})
            assert r.status_code == 404 and "PERIWINKLE" not in r.text, r.text
    with _client(gw, owner) as a:  # and nothing of theirs landed in it
        assert a.get(f"/v1/collections/{cid}").json()["document_count"] == 1


def test_cached_answers_never_cross_tenants(gw: GatewayServer, sim: Any) -> None:
    if gw.state.caching is None:
        pytest.skip("the cache stage is not wired into the pipeline yet (state.caching is None)")
    a = gw.make_key(tenant="cache-a", team="t")
    b = gw.make_key(tenant="cache-b", team="t")
    body = {"model": "small", "messages": [{"role": "user", "content": "Name three rivers."}],
            "max_tokens": 8, "seed": 7, "temperature": 0}
    with _client(gw, a) as ca, _client(gw, b) as cb:
        first = ca.post("/v1/chat/completions", json=body)
        deadline = time.monotonic() + 5
        again = ca.post("/v1/chat/completions", json=body)
        while again.headers.get("x-frugate-cache") != "hit" and time.monotonic() < deadline:
            time.sleep(0.1)  # stores may be asynchronous
            again = ca.post("/v1/chat/completions", json=body)
        assert first.status_code == again.status_code == 200
        assert again.headers["x-frugate-cache"] == "hit", "tenant A's own repeat is a hit"
        before = sim.stats()["received"]
        other = cb.post("/v1/chat/completions", json=body)
        assert other.status_code == 200
        assert other.headers["x-frugate-cache"] != "hit", "tenant B must not get A's answer"
        assert sim.stats()["received"] == before + 1, "tenant B's request went upstream"
