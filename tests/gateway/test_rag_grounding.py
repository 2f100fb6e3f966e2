"""RAG through the gateway: the replica receives the grounding message; citations come back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.gateway.harness import GatewayServer
from workers.sim.process import SimServer

DOCS = {
    "vpn.md": "# VPN access\n\nTo reset your VPN password, open the IT portal and choose "
              "'Reset VPN credentials'. Tokens expire after 90 days.",
    "lunch.md": "# Canteen\n\nThe canteen serves lunch from noon to 2 pm on weekdays.",
}


@pytest.fixture(scope="module")
def grounded(gateway: GatewayServer) -> Iterator[tuple[str, str]]:
    """A key and the id of a collection of its tenant holding DOCS."""
    key = gateway.make_key(tenant="acme", team="it")
    p = next(p for p in gateway.state.directory.by_hash.values() if p.team_id and
             gateway.state.directory.teams[p.team_id].name == "it")
    store = gateway.state.grounding.store
    col = store.create(p.tenant_id, "handbook-" + p.team_id)
    for name, text in DOCS.items():
        col.add_document(text, filename=name)
    yield key, col.info().id
    store.delete(p.tenant_id, col.info().id)


def _ask(client: openai.OpenAI, collection: str, **kw: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="small", max_tokens=10,
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "How do I reset my VPN password?"}],
        extra_body={"frugate": {"rag": {"collection": collection, "top_k": 2}}}, **kw)


def test_grounding_message_reaches_the_replica_and_citations_return(
        gateway: GatewayServer, sims: dict[str, SimServer], grounded: tuple[str, str]) -> None:
    key, collection = grounded
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0) as client:
        raw = _ask(client, collection)
    body = raw.parse()
    citations = body.model_extra["frugate"]["citations"]
    assert citations[0]["filename"] == "vpn.md" and citations[0]["index"] == 1
    assert raw.headers["x-frugate-citations"] == str(len(citations))
    sent = sims["small"].requests(limit=1)[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "system", "user"]
    grounding = sent[1]["content"]
    assert "[1]" in grounding and "Reset VPN credentials" in grounding
    assert sent[2]["content"] == "How do I reset my VPN password?"  # user text untouched
    assert "frugate" not in sims["small"].requests(limit=1)[-1]["body"]


def test_stream_carries_citations_in_its_final_chunk(
        gateway: GatewayServer, grounded: tuple[str, str]) -> None:
    key, collection = grounded
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0) as client:
        stream = _ask(client, collection, stream=True).parse()
        chunks = list(stream)
    extras = [c.model_extra.get("frugate") for c in chunks if c.model_extra]
    final = [e for e in extras if e]
    assert len(final) == 1 and final[0]["citations"][0]["filename"] == "vpn.md"
    assert chunks[-1].model_extra.get("frugate") == final[0]


def test_other_tenant_cannot_ground_on_the_collection(
        gateway: GatewayServer, grounded: tuple[str, str]) -> None:
    _, collection = grounded
    outsider = gateway.make_key(tenant="globex", team="it")
    with openai.OpenAI(base_url=gateway.base_url, api_key=outsider, max_retries=0) as client, \
            pytest.raises(openai.NotFoundError) as info:
        _ask(client, collection)
    assert info.value.code == "collection_not_found"


def test_a_cache_hit_on_a_grounded_request_keeps_its_citations(
        gateway: GatewayServer, grounded: tuple[str, str]) -> None:
    key, collection = grounded
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0) as client:
        first = _ask(client, collection)
        import time

        time.sleep(0.3)  # the answer is stored after it is sent
        again = _ask(client, collection)
        stream = _ask(client, collection, stream=True)
        chunks = list(stream.parse())
    assert again.headers["x-frugate-cache"] == "hit"
    cited = first.parse().model_extra["frugate"]["citations"]
    assert again.parse().model_extra["frugate"]["citations"] == cited
    assert stream.headers["x-frugate-cache"] == "hit"
    assert chunks[-1].model_extra["frugate"]["citations"] == cited
