from __future__ import annotations

from cache.index import IndexedEntry, SemanticIndex
from tests.cache.conftest import near, unit


def item(i: int, filter_key: str = "f", expires: float = 1e12) -> IndexedEntry:
    return IndexedEntry(f"e{i}", filter_key, f"text {i}", expires, "acme", None, "small")


def test_search_stays_inside_filter_group() -> None:
    index = SemanticIndex(384)
    index.add(item(1, "tenant-a"), unit(1))
    index.add(item(2, "tenant-b"), unit(1))  # same vector, other group
    found = index.search("tenant-a", unit(1), k=5, now=0)
    assert [c.entry.entry_id for c in found] == ["e1"]
    assert index.search("tenant-c", unit(1), k=5, now=0) == []


def test_nearest_first_and_expired_skipped() -> None:
    index = SemanticIndex(384)
    q = unit(7)
    index.add(item(1), near(q, 0.8, seed=1))
    index.add(item(2), near(q, 0.95, seed=2))
    index.add(item(3, expires=5), near(q, 0.99, seed=3))
    found = index.search("f", q, k=3, now=10)
    assert [c.entry.entry_id for c in found] == ["e2", "e1"]
    assert abs(found[0].similarity - 0.95) < 1e-4


def test_switches_to_hnsw_and_deletes_with_tombstones() -> None:
    index = SemanticIndex(384, hnsw_from=50)
    for i in range(60):
        index.add(item(i), unit(i))
    group = index._groups["f"]
    assert group.hnsw
    assert index.search("f", unit(10), k=1, now=0)[0].entry.entry_id == "e10"
    index.remove(["e10"])
    assert index.search("f", unit(10), k=1, now=0)[0].entry.entry_id != "e10"
    index.remove([f"e{i}" for i in range(20, 40)])  # enough dead rows to force a rebuild
    assert index._groups["f"].dead < 10
    assert len(index) == 39
    assert index.search("f", unit(45), k=1, now=0)[0].entry.entry_id == "e45"
