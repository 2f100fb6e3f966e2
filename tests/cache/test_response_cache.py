from __future__ import annotations

from cache import CachePolicy, MemoryStore, ResponseCache, Scope, request_keys
from tests.cache.conftest import Clock, chat, completion, near, unit

ORIGINAL = "How can I reset my password?"
PARAPHRASE = "How do I reset my password?"
DIFFERENT = "How can I reset my router password?"


# The bundled verifier is calibrated on QQP, whose labels are noisy enough that small
# budgets allow no semantic hits at all; these tests exercise the semantic path at 15%.
DELTA = 0.15


async def make_cache(clock: Clock, **kwargs: object) -> ResponseCache:
    kwargs.setdefault("delta", DELTA)
    cache = ResponseCache(MemoryStore(clock=clock), clock=clock, **kwargs)  # type: ignore[arg-type]
    await cache.open()
    return cache


async def test_exact_then_semantic_hit(clock: Clock) -> None:
    cache = await make_cache(clock)
    v = unit(1)
    keys = request_keys(chat(ORIGINAL), Scope("acme"))
    await cache.put(keys, completion("Use the reset link."), v, ttl_s=60)
    hit = await cache.lookup(request_keys(chat(ORIGINAL), Scope("acme")), v)
    assert hit is not None and hit.kind == "exact" and hit.similarity == 1.0
    para = request_keys(chat(PARAPHRASE), Scope("acme"))
    hit = await cache.lookup(para, near(v, 0.995))
    assert hit is not None and hit.kind == "semantic"
    assert hit.response["choices"][0]["message"]["content"] == "Use the reset link."
    assert 0.99 < hit.similarity < 0.999 and hit.score is not None
    assert cache.metrics.hits == {"exact": 1, "semantic": 1}


async def test_verifier_rejects_near_miss(clock: Clock) -> None:
    cache = await make_cache(clock)
    v = unit(2)
    await cache.put(request_keys(chat(ORIGINAL), Scope("acme")), completion("a"), v)
    # Same embedding neighbourhood, different question: the verifier must refuse.
    for text in (DIFFERENT, "How many passwords can I reset per day in 2024?"):
        assert await cache.lookup(request_keys(chat(text), Scope("acme")), near(v, 0.93)) is None
    assert cache.metrics.verifier_rejections == 2
    assert cache.metrics.misses["semantic"] == 2
    # A smaller false-hit budget is stricter: what passes at 15% may not pass at 1%.
    para = request_keys(chat(PARAPHRASE), Scope("acme"))
    strict = cache.verifier.threshold(0.01)
    hit = await cache.lookup(para, near(v, 0.995))
    assert hit is not None and hit.score is not None
    assert (await cache.lookup_semantic(para, near(v, 0.995), delta=0.01) is None) == (
        hit.score < strict
    )


async def test_never_across_tenants(clock: Clock) -> None:
    cache = await make_cache(clock)
    v = unit(3)
    await cache.put(request_keys(chat(ORIGINAL), Scope("acme")), completion("acme's"), v)
    for scope in (Scope("globex"), Scope("globex", "team-a")):
        keys = request_keys(chat(ORIGINAL), scope)
        assert await cache.lookup(keys, v) is None  # neither exact nor semantic
        assert await cache.lookup(request_keys(chat(PARAPHRASE), scope), near(v, 0.99)) is None


async def test_per_team_scoping(clock: Clock) -> None:
    cache = await make_cache(clock)
    v = unit(4)
    team_policy = CachePolicy(per_team=True)
    shared_policy = CachePolicy()
    await cache.put(
        request_keys(chat(ORIGINAL), team_policy.scope("acme", "red")), completion("red"), v
    )
    blue = request_keys(chat(ORIGINAL), team_policy.scope("acme", "blue"))
    assert await cache.lookup(blue, v) is None
    red = request_keys(chat(ORIGINAL), team_policy.scope("acme", "red"))
    assert await cache.lookup(red, v) is not None
    # Tenant-wide scoping shares across teams of one tenant (and only that tenant).
    await cache.put(
        request_keys(chat(ORIGINAL), shared_policy.scope("acme", "red")), completion("all"), v
    )
    blue_shared = request_keys(chat(ORIGINAL), shared_policy.scope("acme", "blue"))
    hit = await cache.lookup(blue_shared, v)
    assert hit is not None and hit.response["choices"][0]["message"]["content"] == "all"


async def test_context_mismatch_is_never_a_semantic_hit(clock: Clock) -> None:
    cache = await make_cache(clock)
    v = unit(5)
    await cache.put(request_keys(chat(ORIGINAL), Scope("acme")), completion("a"), v)
    for changed in (chat(PARAPHRASE, temperature=0.3), chat(PARAPHRASE, max_tokens=5)):
        assert await cache.lookup(request_keys(changed, Scope("acme")), near(v, 0.99)) is None
    big = request_keys(chat(PARAPHRASE), Scope("acme"), model="large")
    assert await cache.lookup(big, near(v, 0.99)) is None


async def test_ttl_and_purge(clock: Clock) -> None:
    cache = await make_cache(clock)
    v = unit(6)
    keys = request_keys(chat(ORIGINAL), Scope("acme", "red"))
    await cache.put(keys, completion("a"), v, ttl_s=30)
    clock.now += 31
    assert await cache.lookup(keys, v) is None
    await cache.put(keys, completion("b"), v, ttl_s=30)
    other = request_keys(chat(ORIGINAL), Scope("globex"))
    await cache.put(other, completion("c"), v, ttl_s=30)
    assert await cache.purge("acme", team="red") == 1
    assert await cache.lookup(keys, v) is None
    assert await cache.lookup(other, v) is not None
    assert cache.metrics.entries == 1


async def test_exact_only_entries_without_vectors(clock: Clock) -> None:
    cache = await make_cache(clock)
    keys = request_keys(chat(ORIGINAL), Scope("acme"))
    await cache.put(keys, completion("a"))
    assert await cache.lookup(keys, None) is not None
    assert await cache.lookup(request_keys(chat(PARAPHRASE), Scope("acme")), unit(7)) is None
