"""Entries in Redis, shared by every replica.

Each entry is a hash (`meta` JSON, `response` JSON, `vector` bytes) that expires with
the entry; `x:<exact key>` points at it. Every write is also appended to a stream
that each replica tails to keep its local faiss index in sync, so a hit stored by
one replica is found by all. All keys share one hash tag (`{fc:<namespace>}`) so the
multi-key transactions work on Redis Cluster. Size is bounded by evicting the least
recently used entries (a sorted set of last-use times).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis

from cache.entries import CacheEntry, StoreListener, decode_vector
from cache.index import IndexedEntry

__all__ = ["RedisStore"]

_DEL_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _meta(entry: CacheEntry) -> bytes:
    return orjson.dumps(
        {
            "id": entry.entry_id,
            "exact": entry.exact,
            "filter": entry.filter,
            "text": entry.text,
            "tenant": entry.tenant,
            "team": entry.team,
            "model": entry.model,
            "created": entry.created,
            "expires": entry.expires,
        }
    )


def _indexed(meta: dict[str, Any]) -> IndexedEntry:
    return IndexedEntry(
        meta["id"],
        meta["filter"],
        meta["text"],
        float(meta["expires"]),
        meta["tenant"],
        meta.get("team"),
        meta["model"],
    )


class RedisStore:
    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str = "default",
        max_entries: int = 1_000_000,
        stream_len: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # redis-py's type stubs do not model decode_responses=False replies (bytes) well.
        self.redis: Any = client
        self.max_entries = max_entries
        self.stream_len = stream_len
        self.clock = clock
        self.origin = uuid.uuid4().hex  # events this replica wrote are already applied
        self._prefix = f"frugate:cache:{{fc:{namespace}}}:"
        self._listener: StoreListener | None = None
        self._tail: asyncio.Task[None] | None = None
        self.last_event = "0-0"
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStore:
        return cls(aioredis.Redis.from_url(url), **kwargs)

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}{kind}{':' + name if name else ''}"

    # --- keeping the local index in sync -------------------------------------------

    async def open(self, listener: StoreListener) -> None:
        self._listener = listener
        last = await self.redis.xrevrange(self._key("stream"), count=1)
        self.last_event = last[0][0].decode() if last else "0-0"
        await self._load_all()
        self._tail = asyncio.create_task(self._follow(), name="frugate-cache-follow")

    async def _load_all(self) -> None:
        assert self._listener is not None
        now = self.clock()
        async for batch in self._scan_entries():
            pipe = self.redis.pipeline(transaction=False)
            for key in batch:
                pipe.hmget(key, "meta", "vector")
            for meta_raw, vec_raw in await pipe.execute():
                if meta_raw is None or vec_raw is None:
                    continue
                meta = orjson.loads(meta_raw)
                if float(meta["expires"]) > now:
                    self._listener.add(_indexed(meta), decode_vector(vec_raw))

    async def _scan_entries(self, count: int = 500) -> Any:
        batch: list[bytes] = []
        async for key in self.redis.scan_iter(match=self._key("e", "*"), count=count):
            batch.append(key)
            if len(batch) >= count:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _follow(self) -> None:
        stream = self._key("stream")
        while not self._closed:  # also checked per read: redis-py can swallow a cancel
            try:
                reply = await self.redis.xread({stream: self.last_event}, count=500, block=1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                # redis-py may turn a cancelled blocking read into a connection error.
                task = asyncio.current_task()
                if self._closed or (task is not None and task.cancelling()):
                    return
                await asyncio.sleep(0.5)  # connection blip: retry without losing our place
                continue
            for _, events in reply or []:
                for event_id, fields in events:
                    self.last_event = event_id.decode()
                    self._apply(fields)

    def _apply(self, fields: dict[bytes, bytes]) -> None:
        if self._listener is None or fields.get(b"origin", b"").decode() == self.origin:
            return
        op = fields.get(b"op")
        if op == b"add":
            meta = orjson.loads(fields[b"meta"])
            if float(meta["expires"]) > self.clock():
                self._listener.add(_indexed(meta), decode_vector(fields[b"vector"]))
        elif op == b"del":
            self._listener.remove(fields[b"ids"].decode().split(","))

    async def close(self) -> None:
        self._closed = True
        if self._tail is not None:
            self._tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([self._tail], timeout=5)
            self._tail = None

    # --- reads ---------------------------------------------------------------------

    async def get(self, entry_id: str) -> CacheEntry | None:
        key = self._key("e", entry_id)
        meta_raw, response_raw, vec_raw = await self.redis.hmget(key, "meta", "response", "vector")
        if meta_raw is None or response_raw is None:
            if self._listener is not None:
                self._listener.remove([entry_id])  # expired or deleted behind our back
            return None
        meta = orjson.loads(meta_raw)
        if float(meta["expires"]) <= self.clock():
            return None
        await self.redis.zadd(self._key("lru"), {entry_id: self.clock()}, xx=True)
        return CacheEntry(
            entry_id=meta["id"],
            exact=meta["exact"],
            filter=meta["filter"],
            text=meta["text"],
            response=orjson.loads(response_raw),
            vector=None if vec_raw is None else decode_vector(vec_raw),
            tenant=meta["tenant"],
            team=meta.get("team"),
            model=meta["model"],
            created=float(meta["created"]),
            expires=float(meta["expires"]),
        )

    async def get_exact(self, exact: str) -> CacheEntry | None:
        entry_id = await self.redis.get(self._key("x", exact))
        return None if entry_id is None else await self.get(entry_id.decode())

    async def count(self) -> int:
        return int(await self.redis.zcard(self._key("lru")))

    # --- writes --------------------------------------------------------------------

    async def put(self, entry: CacheEntry) -> None:
        old = await self.redis.get(self._key("x", entry.exact))
        if old is not None and old.decode() != entry.entry_id:
            await self.delete([old.decode()])
        expires_ms = int(entry.expires * 1000)
        key = self._key("e", entry.entry_id)
        fields: dict[str, bytes] = {"meta": _meta(entry), "response": orjson.dumps(entry.response)}
        if entry.vector is not None:
            fields["vector"] = np.asarray(entry.vector, dtype="<f4").tobytes()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=fields)
        pipe.pexpireat(key, expires_ms)
        pipe.set(self._key("x", entry.exact), entry.entry_id, pxat=expires_ms)
        pipe.zadd(self._key("lru"), {entry.entry_id: self.clock()})
        pipe.zadd(self._key("exp"), {entry.entry_id: entry.expires})
        if entry.vector is not None:
            event = {
                "op": "add",
                "origin": self.origin,
                "meta": fields["meta"],
                "vector": fields["vector"],
            }
            pipe.xadd(self._key("stream"), event, maxlen=self.stream_len, approximate=True)
        await pipe.execute()
        if entry.vector is not None and self._listener is not None:
            self._listener.add(entry.indexed(), entry.vector)
        excess = await self.redis.zcard(self._key("lru")) - self.max_entries
        if excess > 0:
            popped = await self.redis.zpopmin(self._key("lru"), excess)
            await self.delete([member.decode() for member, _ in popped])

    async def delete(self, entry_ids: list[str]) -> int:
        if not entry_ids:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.hget(self._key("e", entry_id), "meta")
        metas = await pipe.execute()
        pipe = self.redis.pipeline(transaction=True)
        for entry_id, meta_raw in zip(entry_ids, metas, strict=True):
            if meta_raw is not None:
                exact = orjson.loads(meta_raw)["exact"]
                pipe.eval(_DEL_IF_EQUAL, 1, self._key("x", exact), entry_id)
            pipe.delete(self._key("e", entry_id))
        pipe.zrem(self._key("lru"), *entry_ids)
        pipe.zrem(self._key("exp"), *entry_ids)
        event = {"op": "del", "origin": self.origin, "ids": ",".join(entry_ids)}
        pipe.xadd(self._key("stream"), event, maxlen=self.stream_len, approximate=True)
        await pipe.execute()
        if self._listener is not None:
            self._listener.remove(entry_ids)
        return sum(1 for m in metas if m is not None)

    async def purge(self, tenant: str, team: str | None = None, model: str | None = None) -> int:
        doomed: list[str] = []
        async for batch in self._scan_entries():
            pipe = self.redis.pipeline(transaction=False)
            for key in batch:
                pipe.hget(key, "meta")
            for meta_raw in await pipe.execute():
                if meta_raw is None:
                    continue
                meta = orjson.loads(meta_raw)
                if (
                    meta["tenant"] == tenant
                    and (team is None or meta.get("team") == team)
                    and (model is None or meta["model"] == model)
                ):
                    doomed.append(meta["id"])
        total = 0
        for start in range(0, len(doomed), 500):
            total += await self.delete(doomed[start : start + 500])
        return total

    async def expire(self) -> int:
        """Redis expires the hashes itself; this clears their bookkeeping and tells replicas."""
        gone = await self.redis.zrangebyscore(self._key("exp"), "-inf", self.clock())
        ids = [g.decode() for g in gone]
        for start in range(0, len(ids), 500):
            await self.delete(ids[start : start + 500])
        return len(ids)

    async def clear(self) -> None:
        """Delete every key of this namespace (tests, admin reset)."""
        keys = [k async for k in self.redis.scan_iter(match=self._prefix + "*", count=1000)]
        if keys:
            await self.redis.delete(*keys)
