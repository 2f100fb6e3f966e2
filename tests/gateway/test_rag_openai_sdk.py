"""The OpenAI files / vector-store subset through the official `openai` SDK, end to end:
upload -> vector store -> ask with RAG on -> the replica receives the grounding message."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.gateway.harness import GatewayServer
from tests.rag.conftest import make_pdf
from workers.sim.process import SimServer

FILES: dict[str, tuple[bytes, str]] = {
    "vpn.txt": (b"To reset your VPN password, open the IT portal and choose 'Reset VPN "
                b"credentials'. VPN tokens expire after 90 days.", "text/plain"),
    "parking.md": (b"# Parking\n\n## Permits\n\nParking permits for garage C are issued by the "
                   b"front desk on the ground floor.", "text/markdown"),
    "expenses.html": (b"<html><head><title>Expenses</title></head><body><h1>Travel</h1><p>"
                      b"Airport taxis are reimbursed up to 60 euros per trip.</p><script>"
                      b"var secret = 'zz-tracking';</script></body></html>", "text/html"),
    "safety.pdf": (make_pdf(["Visitor safety briefing.", "Hard hats are mandatory in "
                             "warehouse B at all times."], title="Safety"), "application/pdf"),
}


@pytest.fixture(scope="module")
def sdk(gateway: GatewayServer) -> Iterator[openai.OpenAI]:
    key = gateway.make_key("initech", "support", scopes=["rag:write"])
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def store(sdk: openai.OpenAI) -> Iterator[tuple[str, dict[str, str]]]:
    """A vector store holding FILES (uploaded with files.create); (id, filename -> file id)."""
    ids = {}
    for name, (data, ctype) in FILES.items():
        f = sdk.files.create(file=(name, data, ctype), purpose="assistants")
        assert (f.object, f.filename, f.bytes, f.status) == ("file", name, len(data), "processed")
        ids[name] = f.id
    vs = sdk.vector_stores.create(name="handbook", metadata={"dept": "ops"},
                                  file_ids=[ids["vpn.txt"]])
    assert vs.file_counts.completed == 1 and vs.status == "completed"
    for name in ("parking.md", "expenses.html"):
        vf = sdk.vector_stores.files.create(vector_store_id=vs.id, file_id=ids[name],
                                            attributes={"kind": name.split(".")[1]})
        assert (vf.status, vf.vector_store_id, vf.id) == ("completed", vs.id, ids[name])
    vf = sdk.vector_stores.files.create_and_poll(ids["safety.pdf"], vector_store_id=vs.id,
                                                 attributes={"kind": "pdf", "pages": 2})
    assert vf.status == "completed" and vf.last_error is None and vf.usage_bytes > 0
    yield vs.id, ids
    sdk.vector_stores.delete(vs.id)


def _ask(client: openai.OpenAI, collection: str, question: str, **kw: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="small", max_tokens=8, messages=[{"role": "user", "content": question}],
        extra_body={"frugate": {"cache": "bypass",
                                "rag": {"collection": collection, "top_k": 2}}}, **kw)


@pytest.mark.parametrize(("question", "filename", "expected"), [
    ("How do I reset my VPN password?", "vpn.txt", "Reset VPN credentials"),
    ("Who issues parking permits for garage C?", "parking.md", "front desk"),
    ("How much is reimbursed for an airport taxi?", "expenses.html", "60 euros"),
    ("Are hard hats mandatory in warehouse B?", "safety.pdf", "Hard hats are mandatory"),
])
def test_uploaded_chunks_ground_the_chat(
        gateway: GatewayServer, sims: dict[str, SimServer], sdk: openai.OpenAI,
        store: tuple[str, dict[str, str]], question: str, filename: str, expected: str) -> None:
    vs_id, ids = store
    body = _ask(sdk, vs_id, question).parse()
    citations = body.model_extra["frugate"]["citations"]
    assert citations[0]["doc_id"] == ids[filename] and citations[0]["filename"] == filename
    sent = sims["small"].requests(limit=1)[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"] and sent[1]["content"] == question
    assert expected in sent[0]["content"] and "[1]" in sent[0]["content"]
    assert "zz-tracking" not in sent[0]["content"]  # HTML scripts are not indexed


def test_stream_carries_citations_in_its_final_chunk(
        sdk: openai.OpenAI, store: tuple[str, dict[str, str]]) -> None:
    vs_id, ids = store
    chunks = list(_ask(sdk, vs_id, "Are hard hats mandatory in warehouse B?",
                       stream=True).parse())
    extras = [c.model_extra.get("frugate") for c in chunks if c.model_extra]
    final = [e for e in extras if e]
    assert len(final) == 1 and chunks[-1].model_extra.get("frugate") == final[0]
    first = final[0]["citations"][0]
    assert first["doc_id"] == ids["safety.pdf"] and first["page"] == 2


def test_objects_parse_in_sdk_types(sdk: openai.OpenAI,
                                    store: tuple[str, dict[str, str]]) -> None:
    vs_id, ids = store
    vs = sdk.vector_stores.retrieve(vs_id)
    assert (vs.name, vs.metadata, vs.file_counts.total) == ("handbook", {"dept": "ops"}, 4)
    assert vs_id in [v.id for v in sdk.vector_stores.list()]
    files = list(sdk.vector_stores.files.list(vector_store_id=vs_id, limit=1))  # 4 pages
    assert sorted(f.id for f in files) == sorted(ids.values())
    assert {f.id: f.attributes for f in files}[ids["safety.pdf"]] == {"kind": "pdf", "pages": 2}
    got = sdk.vector_stores.files.retrieve(ids["parking.md"], vector_store_id=vs_id)
    assert got.attributes == {"kind": "md"}
    assert set(ids.values()) <= {f.id for f in sdk.files.list()}
    assert sdk.files.retrieve(ids["vpn.txt"]).filename == "vpn.txt"
    assert sdk.files.content(ids["parking.md"]).read() == FILES["parking.md"][0]


def test_vector_store_search(sdk: openai.OpenAI, store: tuple[str, dict[str, str]]) -> None:
    vs_id, ids = store
    page = sdk.vector_stores.search(vs_id, query="parking permit garage", max_num_results=2)
    assert len(page.data) == 2 and page.data[0].file_id == ids["parking.md"]
    assert page.data[0].filename == "parking.md" and page.data[0].attributes == {"kind": "md"}
    assert "front desk" in page.data[0].content[0].text and page.data[0].content[0].type == "text"
    assert page.data[0].score >= page.data[1].score
    only_pdf = sdk.vector_stores.search(
        vs_id, query="parking permit garage",
        filters={"type": "and", "filters": [{"type": "eq", "key": "kind", "value": "pdf"},
                                            {"type": "gte", "key": "pages", "value": 2}]})
    assert {r.file_id for r in only_pdf.data} == {ids["safety.pdf"]}
    with pytest.raises(openai.BadRequestError):
        sdk.vector_stores.search(vs_id, query="x", filters={"type": "like", "key": "kind",
                                                            "value": "p"})


def test_duplicate_names_are_allowed(sdk: openai.OpenAI) -> None:
    a = sdk.vector_stores.create(name="notes")
    b = sdk.vector_stores.create(name="notes")
    try:
        assert a.id != b.id and a.name == b.name == "notes"
    finally:
        assert sdk.vector_stores.delete(a.id).deleted
        sdk.vector_stores.delete(b.id)
    with pytest.raises(openai.NotFoundError):
        sdk.vector_stores.retrieve(a.id)


def test_detach_and_delete_remove_a_file_from_both_indexes(sdk: openai.OpenAI) -> None:
    f = sdk.files.create(file=("canteen.txt", b"The canteen serves lunch from noon to two on "
                               b"weekdays."), purpose="user_data")
    vs = sdk.vector_stores.create(name="scratch", file_ids=[f.id])
    query = "when does the canteen serve lunch"
    try:
        for mode in ("bm25", "dense"):
            hits = sdk.vector_stores.search(vs.id, query=query, extra_body={"mode": mode})
            assert [h.file_id for h in hits.data] == [f.id], mode
        deleted = sdk.vector_stores.files.delete(f.id, vector_store_id=vs.id)
        assert deleted.deleted and deleted.object == "vector_store.file.deleted"
        for mode in ("bm25", "dense"):
            assert sdk.vector_stores.search(vs.id, query=query,
                                            extra_body={"mode": mode}).data == [], mode
        again = sdk.vector_stores.files.create(vector_store_id=vs.id, file_id=f.id)
        assert again.id == f.id  # the staged file is still there: attach it again
        assert sdk.vector_stores.files.create(vector_store_id=vs.id, file_id=f.id).id == f.id
        assert sdk.files.delete(f.id).deleted  # OpenAI: deleting a file detaches it
        assert sdk.vector_stores.retrieve(vs.id).file_counts.total == 0
        for mode in ("bm25", "dense"):
            assert sdk.vector_stores.search(vs.id, query=query,
                                            extra_body={"mode": mode}).data == [], mode
        with pytest.raises(openai.NotFoundError):
            sdk.files.retrieve(f.id)
    finally:
        sdk.vector_stores.delete(vs.id)


def test_other_tenant_sees_nothing(gateway: GatewayServer, sdk: openai.OpenAI,
                                   store: tuple[str, dict[str, str]]) -> None:
    vs_id, ids = store
    key = gateway.make_key("umbrella", "support", scopes=["rag:write"])
    with openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0) as other:
        calls = [
            lambda: other.vector_stores.retrieve(vs_id),
            lambda: other.vector_stores.search(vs_id, query="VPN"),
            lambda: other.vector_stores.files.list(vector_store_id=vs_id),
            lambda: other.vector_stores.files.create(vector_store_id=vs_id,
                                                     file_id=ids["vpn.txt"]),
            lambda: other.vector_stores.delete(vs_id),
            lambda: other.files.retrieve(ids["vpn.txt"]),
            lambda: other.files.delete(ids["vpn.txt"]),
            lambda: _ask(other, vs_id, "How do I reset my VPN password?"),
        ]
        for call in calls:
            with pytest.raises(openai.NotFoundError):
                call()
        own = other.vector_stores.create(name="theirs")
        with pytest.raises(openai.NotFoundError):  # their file is not ours to attach
            other.vector_stores.files.create(vector_store_id=own.id, file_id=ids["vpn.txt"])
        assert [v.id for v in other.vector_stores.list()] == [own.id]
        assert list(other.files.list()) == []
        other.vector_stores.delete(own.id)
    assert sdk.vector_stores.retrieve(vs_id).file_counts.total == 4


def test_a_file_that_fails_to_ingest_is_refused_whole(sdk: openai.OpenAI) -> None:
    before = {v.id for v in sdk.vector_stores.list()}
    good = sdk.files.create(file=("ok.txt", b"Plain words."), purpose="assistants")
    bad = sdk.files.create(file=("logo.png", b"\x89PNG\r\n\x1a\n" + bytes(32), "image/png"),
                           purpose="assistants")
    with pytest.raises(openai.BadRequestError) as info:
        sdk.vector_stores.create(name="broken", file_ids=[good.id, bad.id])
    assert info.value.code == "invalid_document"
    assert {v.id for v in sdk.vector_stores.list()} == before  # no half-built store left
    with pytest.raises(openai.NotFoundError):
        sdk.vector_stores.create(name="ghost", file_ids=["file-" + "0" * 24])
    assert {v.id for v in sdk.vector_stores.list()} == before
    for f in (good, bad):
        sdk.files.delete(f.id)
