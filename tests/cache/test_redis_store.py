"""Replicas sharing one Redis: needs the real server at 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cache import RedisStore, ResponseCache, Scope, request_keys
from tests.cache.conftest import chat, completion, near, unit

REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[2]
ACME = Scope("acme")


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    ns = f"test-{uuid.uuid4().hex[:8]}"
    yield ns
    client = aioredis.Redis.from_url(REDIS_URL)
    await RedisStore(client, namespace=ns).clear()
    await client.aclose()


async def replica(ns: str, **kwargs: object) -> ResponseCache:
    store = RedisStore.from_url(REDIS_URL, namespace=ns, **kwargs)  # type: ignore[arg-type]
    cache = ResponseCache(store, delta=0.2)  # semantic hits on: see test_response_cache
    await cache.open()
    return cache


async def shutdown(*caches: ResponseCache) -> None:
    for cache in caches:
        await cache.close()
        await cache.store.redis.aclose()  # type: ignore[attr-defined]


async def wait_for(predicate: object, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return False


async def test_replicas_share_semantic_hits_and_purges(namespace: str) -> None:
    a, b = await replica(namespace), await replica(namespace)
    try:
        v = unit(11)
        entry_id = await a.put(
            request_keys(chat("How can I reset my password?"), ACME), completion("link"), v
        )
        assert await wait_for(lambda: entry_id in b.index)
        exact = await b.lookup(request_keys(chat("How can I reset my password?"), ACME), v)
        assert exact is not None and exact.kind == "exact"
        para = request_keys(chat("How do I reset my password?"), ACME)
        hit = await b.lookup(para, near(v, 0.98))
        assert hit is not None and hit.kind == "semantic" and hit.entry_id == entry_id
        assert (
            await b.lookup(request_keys(chat("How do I reset my password?"), Scope("x")), v) is None
        )
        assert await b.purge("acme") == 1
        assert await wait_for(lambda: entry_id not in a.index)
        assert await a.lookup(para, near(v, 0.98)) is None
    finally:
        await shutdown(a, b)


async def test_late_replica_loads_existing_entries(namespace: str) -> None:
    a = await replica(namespace)
    try:
        ids = [
            await a.put(
                request_keys(chat(f"question number {i}"), ACME), completion(str(i)), unit(20 + i)
            )
            for i in range(5)
        ]
        b = await replica(namespace)
        try:
            assert all(i in b.index for i in ids)
            assert b.metrics.entries == 5
        finally:
            await shutdown(b)
    finally:
        await shutdown(a)


async def test_ttl_and_lru_bound(namespace: str) -> None:
    a = await replica(namespace, max_entries=2)
    try:
        short = request_keys(chat("short lived"), ACME)
        await a.put(short, completion("x"), unit(30), ttl_s=0.3)
        await asyncio.sleep(0.4)
        assert await a.lookup(short, unit(30)) is None
        await a.expire()
        ids = [
            await a.put(request_keys(chat(f"entry {i}"), ACME), completion(str(i)), unit(40 + i))
            for i in range(3)
        ]
        assert await a.store.count() == 2
        assert ids[0] not in a.index
        assert await a.lookup(request_keys(chat("entry 0"), ACME), None) is None
        assert await a.lookup(request_keys(chat("entry 2"), ACME), None) is not None
    finally:
        await shutdown(a)


WRITER = """
import asyncio, sys
import numpy as np
from cache import RedisStore, ResponseCache, Scope, request_keys

async def main():
    cache = ResponseCache(RedisStore.from_url(sys.argv[1], namespace=sys.argv[2]))
    await cache.open()
    v = np.random.default_rng(7).standard_normal(384).astype(np.float32)
    v /= np.linalg.norm(v)
    keys = request_keys({"model": "small", "messages": [
        {"role": "user", "content": "What is the capital of France?"}]}, Scope("acme"))
    await cache.put(keys, {"choices": [{"index": 0, "message": {
        "role": "assistant", "content": "Paris"}, "finish_reason": "stop"}]}, v)
    await cache.close()
    print(keys.text)

asyncio.run(main())
"""


async def test_two_processes_share_hits(namespace: str) -> None:
    b = await replica(namespace)
    try:
        # A thread, not asyncio's child watcher (unreliable across pytest's event loops).
        proc = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", WRITER, REDIS_URL, namespace],
            cwd=ROOT,
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr.decode()
        assert await wait_for(lambda: len(b.index) == 1)
        v = unit(7)  # not the writer's vector: the exact hit needs none
        hit = await b.lookup(request_keys(chat("What is the capital of France?"), ACME), v)
        assert hit is not None and hit.response["choices"][0]["message"]["content"] == "Paris"
    finally:
        await shutdown(b)
