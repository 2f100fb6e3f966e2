"""Live invalidation: an admin change reaches every replica's directory within a second.

After an admin write commits, the API calls `publish(kind, id)` (kind: tenant | team | key |
budget | price; a budget's id is "scope:scope_id"). The change is applied to this replica's
directory at once and, with Redis, PUBLISHed on `frugate:invalidate`; every replica's subscriber
reloads that object from the database. Two safety nets cover lost messages (a Redis restart, a
replica that was briefly disconnected): a full reload after every (re)subscribe and every
`full_reload_s` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import orjson

from gateway.tenancy.directory import Directory

log = logging.getLogger("frugate.tenancy")

CHANNEL = "frugate:invalidate"
KINDS = frozenset({"tenant", "team", "key", "budget", "price"})


class Invalidator:
    def __init__(self, directory: Directory, redis: Any = None, *, redis_url: str | None = None,
                 channel: str = CHANNEL, full_reload_s: float = 30.0,
                 retry_max_s: float = 5.0) -> None:
        self.directory = directory
        self.origin = secrets.token_hex(8)  # our own messages come back: skip them
        self.channel = channel
        self.full_reload_s = full_reload_s
        self.retry_max_s = retry_max_s
        self.received = 0
        self._own_redis = False
        if redis is None and redis_url is not None:
            import redis.asyncio as aioredis

            redis = aioredis.from_url(redis_url, socket_connect_timeout=2.0,
                                      health_check_interval=10,
                                      client_name=f"frugate-invalidator-{self.origin}")
            self._own_redis = True
        self.redis = redis
        # Serialises reloads: a full reload that read the rows before a change committed must
        # not overwrite the newer single-object reload that followed it.
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._periodic()))
        if self.redis is not None:
            self._tasks.append(asyncio.create_task(self._subscribe()))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        if self._own_redis and self.redis is not None:
            await self.redis.aclose()

    async def publish(self, kind: str, ident: str) -> None:
        """Apply a committed change here at once, then tell the other replicas."""
        if kind not in KINDS:
            raise ValueError(f"unknown invalidation kind {kind!r}")
        await self.apply(kind, ident)
        if self.redis is None:
            return
        msg = orjson.dumps({"kind": kind, "id": ident, "origin": self.origin})
        try:
            await self.redis.publish(self.channel, msg)
        except Exception as exc:  # the periodic full reload still carries the change
            log.warning("could not publish an invalidation (%s %s): %s", kind, ident, exc)

    async def apply(self, kind: str, ident: str) -> None:
        async with self._lock:
            await self.directory.reload(kind, ident)

    async def reload_all(self) -> None:
        async with self._lock:
            await self.directory.reload_all()

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.full_reload_s)
            try:
                await self.reload_all()
            except Exception as exc:
                log.warning("periodic directory reload failed: %s", exc)

    async def _subscribe(self) -> None:
        delay = 0.1
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as ps:
                    await ps.subscribe(self.channel)
                    # Whatever changed while we were not listening.
                    await self.reload_all()
                    self.subscribed.set()
                    delay = 0.1
                    while True:
                        msg = await ps.get_message(timeout=1.0)
                        if msg is not None:
                            await self._handle(msg.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                log.warning("invalidation subscriber lost Redis (%s); resubscribing in %.1fs",
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(self.retry_max_s, delay * 2)

    async def _handle(self, data: Any) -> None:
        try:
            msg = orjson.loads(data)
            kind, ident = msg["kind"], str(msg["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignored a malformed invalidation message")
            return
        if msg.get("origin") == self.origin or kind not in KINDS:
            return
        self.received += 1
        try:
            await self.apply(kind, ident)
        except Exception as exc:  # e.g. the database is down; the periodic reload catches up
            log.warning("invalidation reload of %s %s failed: %s", kind, ident, exc)
