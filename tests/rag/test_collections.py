from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from rag import (
    CollectionExists,
    CollectionNotFound,
    CollectionStore,
    DocumentExists,
    DocumentInput,
    DocumentNotFound,
    InvalidDocument,
)
from tests.rag.conftest import HashEmbedder, make_pdf

CATS = "# Cats\n\nCats purr and sleep all day.\n\n## Food\n\nCats eat fish and chicken."
DOGS = "Dogs bark at the mailman. Dogs chase balls in the park."
ROCKETS = (
    "<html><head><title>Rockets</title></head>"
    "<body><p>Rockets burn liquid oxygen.</p></body></html>"
)


def test_add_search_and_hit_fields(store: CollectionStore) -> None:
    col = store.create("acme", "pets")
    info = col.add_document(CATS, doc_id="cats", filename="cats.md", metadata={"lang": "en"})
    assert (info.id, info.format, info.title, info.chunk_count) == ("cats", "markdown", "Cats", 2)
    col.add_document(DOGS, doc_id="dogs", filename="dogs.txt")
    hits = col.search("what do cats eat fish", k=2)
    top = hits[0]
    assert (top.doc_id, top.context) == ("cats", "Cats > Food")
    assert top.text == "Cats eat fish and chicken."
    assert top.chunk_id.startswith("cats#1-") and top.filename == "cats.md"
    assert top.metadata == {"lang": "en"} and top.title == "Cats" and 0 < top.score <= 1
    assert [h.doc_id for h in col.search("dogs bark mailman", k=1, mode="bm25")] == ["dogs"]
    assert col.info().document_count == 2 and col.info().chunk_count == 3


def test_precomputed_vector_is_used_instead_of_embedding(store: CollectionStore,
                                                         hash_embedder: HashEmbedder) -> None:
    col = store.create("acme", "pets")
    col.add_document(CATS, doc_id="cats")
    col.add_document(DOGS, doc_id="dogs")
    calls = hash_embedder.calls
    vector = hash_embedder.embed(["dogs bark"])[0]
    hits = col.search("unrelated words", vector, k=1, mode="dense")
    assert hits[0].doc_id == "dogs"
    assert hash_embedder.calls == calls + 1  # only the call made by this test


def test_delete_document_removes_it_from_both_indexes(store: CollectionStore) -> None:
    col = store.create("acme", "pets")
    col.add_document(CATS, doc_id="cats")
    col.add_document(DOGS, doc_id="dogs")
    col.delete_document("dogs")
    for mode in ("dense", "bm25", "fused"):
        hits = col.search("dogs bark at the mailman", k=10, mode=mode)
        assert all(h.doc_id != "dogs" for h in hits), mode
    assert col.search("dogs bark mailman", k=5, mode="bm25") == []
    assert [d.id for d in col.documents()] == ["cats"]
    index = col._index  # the internals: no key of the document is left in either index
    assert len(index.dense) == len(index.bm25) == 2
    with pytest.raises(DocumentNotFound):
        col.delete_document("dogs")
    with pytest.raises(DocumentNotFound):
        col.document("dogs")


def test_persistence_round_trip(tmp_path: Path, encoding) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "rag"
    store = CollectionStore(root, HashEmbedder(), encoding=encoding)
    col = store.create("acme", "pets", team="blue", description="d", metadata={"k": 1})
    col.add_documents([
        DocumentInput(CATS, doc_id="cats", filename="cats.md"),
        DocumentInput(DOGS, doc_id="dogs", title="All about dogs"),
        DocumentInput(make_pdf(["Rockets burn fuel."]), doc_id="pdf", filename="r.pdf"),
    ])
    col.delete_document("pdf")
    before = col.search("cats eat fish", k=3)
    store.close()

    again = CollectionStore(root, HashEmbedder(), encoding=encoding)
    col2 = again.get("acme", "pets", team="blue")
    info = col2.info()
    assert (info.id, info.team, info.description, info.metadata) == (col.id, "blue", "d", {"k": 1})
    assert (info.document_count, info.chunk_count) == (2, 3)
    after = col2.search("cats eat fish", k=3)
    assert [h.chunk_id for h in after] == [h.chunk_id for h in before]
    assert [h.score for h in after] == pytest.approx([h.score for h in before])
    assert col2.document("dogs").title == "All about dogs"
    again.close()


def test_stale_or_missing_snapshot_is_rebuilt_from_the_store(tmp_path: Path, encoding) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "rag"
    crashed = CollectionStore(root, HashEmbedder(), encoding=encoding)
    col = crashed.create("acme", "pets")
    col.add_documents([DocumentInput(CATS, doc_id="cats")])
    col.add_documents([DocumentInput(DOGS, doc_id="dogs")], save=False)  # snapshot now stale
    # no close(): as after a crash, the next process finds the snapshot one generation behind
    again = CollectionStore(root, HashEmbedder(), encoding=encoding)
    hits = again.get("acme", "pets").search("dogs bark", k=1, mode="bm25")
    assert [h.doc_id for h in hits] == ["dogs"]
    again.close()
    shutil.rmtree(root / col.id / "index")
    third = CollectionStore(root, HashEmbedder(), encoding=encoding)
    assert third.list("acme")[0].chunk_count == 3
    assert third.get("acme", "pets")._loaded is None  # listing does not load indexes
    # the first use is a write: the index is rebuilt once, then the new document added
    third.get("acme", "pets").add_document("Parrots talk.", doc_id="parrots")
    col3 = third.get("acme", "pets")
    assert len(col3._index.dense) == len(col3._index.bm25) == 4
    assert [h.doc_id for h in col3.search("cats purr", k=1)] == ["cats"]
    third.close()
    crashed.close()


def test_close_writes_deferred_snapshots(tmp_path: Path, encoding) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "rag"
    store = CollectionStore(root, HashEmbedder(), encoding=encoding)
    col = store.create("acme", "pets")
    col.add_documents([DocumentInput(DOGS, doc_id="dogs")], save=False)
    marker = root / col.id / "index" / "generation"
    assert int(marker.read_text()) < col._db.generation()
    store.close()
    assert int(marker.read_text()) == 1


def test_reindex_rebuilds_from_stored_sources(store: CollectionStore) -> None:
    col = store.create("acme", "pets")
    col.add_document(CATS, doc_id="cats", title="Feline notes")
    col.add_document(ROCKETS.encode(), doc_id="rockets", filename="rockets.html")
    old_ids = {h.chunk_id for h in col.search("cats", k=10)}
    assert col.reindex() == 3
    assert {h.chunk_id for h in col.search("cats", k=10)} == old_ids  # same text, same ids
    assert col.document("cats").title == "Feline notes"  # the given title survives
    assert col.search("liquid oxygen", k=1, mode="bm25")[0].doc_id == "rockets"
    assert len(col._index.dense) == len(col._index.bm25) == 3


def test_duplicate_ids_and_names_conflict(store: CollectionStore) -> None:
    col = store.create("acme", "pets")
    col.add_document(CATS, doc_id="cats")
    with pytest.raises(DocumentExists):
        col.add_document(DOGS, doc_id="cats")
    with pytest.raises(DocumentExists):
        col.add_documents([DocumentInput(DOGS, doc_id="x"), DocumentInput(CATS, doc_id="x")])
    assert [d.id for d in col.documents()] == ["cats"]  # a failed batch adds nothing
    with pytest.raises(CollectionExists):
        store.create("acme", "pets")
    store.create("other-tenant", "pets")  # names are per tenant
    unnamed = store.create("acme")
    assert unnamed.name is None and unnamed.id.startswith("vs_")


def test_invalid_document_is_rejected_and_nothing_is_stored(store: CollectionStore) -> None:
    col = store.create("acme", "pets")
    with pytest.raises(InvalidDocument):
        col.add_document(b"\x00\x01binary", filename="x.bin")
    assert col.documents() == [] and col.info().chunk_count == 0
    rejected: list[str] = []
    infos = col.add_documents(
        [DocumentInput("", doc_id="empty"), DocumentInput(DOGS, doc_id="dogs")],
        on_invalid=lambda doc, exc: rejected.append(str(doc.doc_id)),
    )
    assert [i.id for i in infos] == ["dogs"] and rejected == ["empty"]
    assert [d.id for d in col.documents()] == ["dogs"]


def test_tenant_isolation(store: CollectionStore) -> None:
    mine = store.create("acme", "shared-name")
    mine.add_document("Acme secret plans for the rocket.", doc_id="secret")
    theirs = store.create("globex", "shared-name")
    theirs.add_document("Globex public brochure about rockets.", doc_id="brochure")

    # the same name resolves per tenant; another tenant's id looks exactly like a missing one
    assert store.get("globex", "shared-name").id == theirs.id
    with pytest.raises(CollectionNotFound) as by_id:
        store.get("globex", mine.id)
    with pytest.raises(CollectionNotFound) as missing:
        store.get("globex", "vs_000000000000000000000000")
    assert type(by_id.value) is type(missing.value)
    assert str(by_id.value) == str(missing.value).replace("vs_000000000000000000000000", mine.id)
    with pytest.raises(CollectionNotFound):
        store.delete("globex", mine.id)

    hits = store.get("globex", "shared-name").search("secret rocket plans", k=10)
    assert {h.doc_id for h in hits} == {"brochure"}
    assert [c.id for c in store.list("globex")] == [theirs.id]
    assert store.get("acme", mine.id).search("secret", k=1, mode="bm25")[0].doc_id == "secret"


def test_team_scoping(store: CollectionStore) -> None:
    tenant_wide = store.create("acme", "handbook")
    blue = store.create("acme", "blue-notes", team="blue")
    # a team sees its own and the tenant-wide collections, not another team's
    assert {c.id for c in store.list("acme", team="blue")} == {tenant_wide.id, blue.id}
    assert {c.id for c in store.list("acme", team="red")} == {tenant_wide.id}
    with pytest.raises(CollectionNotFound):
        store.get("acme", blue.id, team="red")
    assert store.get("acme", "blue-notes", team="blue").id == blue.id
    # a tenant-level caller (team None) sees everything of the tenant
    assert {c.id for c in store.list("acme")} == {tenant_wide.id, blue.id}


def test_delete_collection(store: CollectionStore) -> None:
    col = store.create("acme", "pets")
    col.add_document(CATS, doc_id="cats")
    store.delete("acme", "pets")
    assert not col.directory.exists()
    with pytest.raises(CollectionNotFound):
        store.get("acme", "pets")
    with pytest.raises(CollectionNotFound):
        col.search("cats", k=1)  # a handle kept by a caller fails like a lookup
    assert store.create("acme", "pets").info().document_count == 0  # the name is free again


def test_searches_run_while_documents_are_ingested(store: CollectionStore) -> None:
    col = store.create("acme", "pets")
    col.add_document(CATS, doc_id="cats")
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                assert col.search("cats fish", k=3)[0].doc_id == "cats"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(20):
        col.add_document(f"Document {i} about dogs and parks.", doc_id=f"d{i}")
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert col.info().document_count == 21


def test_search_documents_dedupes_chunks_into_documents(store: CollectionStore) -> None:
    col = store.create("acme", "pets")
    long_cats = "# Cats\n\n" + " ".join(f"Cats fact number {i} is about cats." for i in range(200))
    col.add_document(long_cats, doc_id="cats")
    col.add_document(DOGS, doc_id="dogs")
    ranked = col.search_documents("cats fact", k=10, mode="bm25")
    assert [d for d, _ in ranked] == ["cats"]
    assert col.info().chunk_count > 5
    vector = np.zeros(64, dtype=np.float32)
    vector[0] = 1.0
    assert {d for d, _ in col.search_documents("x", vector, k=10, mode="dense")} == {"cats", "dogs"}
