from __future__ import annotations

from pathlib import Path

from cache import CacheEntry, MemoryStore, SemanticIndex
from tests.cache.conftest import Clock, unit


def entry(
    i: int,
    clock: Clock,
    ttl: float = 100,
    tenant: str = "acme",
    team: str | None = None,
    model: str = "small",
    exact: str | None = None,
) -> CacheEntry:
    return CacheEntry(
        entry_id=f"e{i}",
        exact=exact or f"x{i}",
        filter="f",
        text=f"question {i}",
        response={"n": i},
        vector=unit(i),
        tenant=tenant,
        team=team,
        model=model,
        created=clock(),
        expires=clock() + ttl,
    )


async def test_ttl_expiry(clock: Clock) -> None:
    index = SemanticIndex(384)
    store = MemoryStore(clock=clock)
    await store.open(index)
    await store.put(entry(1, clock, ttl=10))
    await store.put(entry(2, clock, ttl=100))
    assert (await store.get_exact("x1")) is not None
    clock.now += 11
    assert await store.get_exact("x1") is None
    assert await store.get("e2") is not None
    assert "e1" not in index and "e2" in index
    clock.now += 100
    assert await store.expire() == 1
    assert await store.count() == 0 and len(index) == 0


async def test_lru_eviction_keeps_recently_used(clock: Clock) -> None:
    index = SemanticIndex(384)
    store = MemoryStore(max_entries=3, clock=clock)
    await store.open(index)
    for i in range(3):
        await store.put(entry(i, clock))
    assert await store.get("e0") is not None  # e0 is now the most recently used
    await store.put(entry(3, clock))
    assert await store.get("e1") is None
    assert {e.entry_id for e in index.entries()} == {"e0", "e2", "e3"}
    assert await store.count() == 3


async def test_same_exact_key_replaces(clock: Clock) -> None:
    index = SemanticIndex(384)
    store = MemoryStore(clock=clock)
    await store.open(index)
    await store.put(entry(1, clock, exact="same"))
    await store.put(entry(2, clock, exact="same"))
    got = await store.get_exact("same")
    assert got is not None and got.entry_id == "e2"
    assert len(index) == 1 and await store.count() == 1


async def test_purge_by_tenant_team_model(clock: Clock) -> None:
    index = SemanticIndex(384)
    store = MemoryStore(clock=clock)
    await store.open(index)
    await store.put(entry(1, clock, tenant="acme", team="a", model="small"))
    await store.put(entry(2, clock, tenant="acme", team="b", model="small"))
    await store.put(entry(3, clock, tenant="acme", team="b", model="large"))
    await store.put(entry(4, clock, tenant="globex", team="a", model="small"))
    assert await store.purge("acme", team="b", model="large") == 1
    assert await store.purge("acme", team="a") == 1
    assert await store.purge("acme") == 1
    assert [e.entry_id for e in index.entries()] == ["e4"]


async def test_persistence_round_trip(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "cache.jsonl"
    store = MemoryStore(path=path, clock=clock)
    await store.open(SemanticIndex(384))
    await store.put(entry(1, clock, ttl=10))
    await store.put(entry(2, clock, ttl=1000))
    await store.close()
    clock.now += 20  # e1 expired while we were down
    index = SemanticIndex(384)
    again = MemoryStore(path=path, clock=clock)
    await again.open(index)
    got = await again.get_exact("x2")
    assert got is not None and got.response == {"n": 2}
    assert got.vector is not None and float(got.vector @ unit(2)) > 0.9999
    assert await again.count() == 1 and [e.entry_id for e in index.entries()] == ["e2"]
