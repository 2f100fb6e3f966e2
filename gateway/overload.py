"""Overload protection: a bounded, tenant-fair gate in front of the pipeline's real work.

At most `max_in_flight` requests run at once, and one tenant may hold at most
`tenant_share` of those slots, so a single tenant's burst cannot starve the others. Requests
beyond that wait in a bounded queue served round-robin across tenants; past the bound, or after
`queue_timeout_s`, they get 503 with Retry-After. Buffered request bodies are bounded too.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from gateway.config import Limits
from gateway.errors import Overloaded


@dataclass(slots=True)
class Slot:
    """One admitted request; `release()` is idempotent."""

    gate: Gate
    tenant: str
    size: int
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate._leave(self)


@dataclass(slots=True)
class _Waiter:
    tenant: str
    size: int
    future: asyncio.Future[Slot] = field(repr=False)


class Gate:
    def __init__(self, max_in_flight: int, max_queue: int, queue_timeout_s: float,
                 tenant_share: float, max_buffered_bytes: int) -> None:
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.tenant_cap = max(1, int(max_in_flight * tenant_share))
        self.max_buffered_bytes = max_buffered_bytes
        self.in_flight = 0
        self.buffered = 0
        self.by_tenant: dict[str, int] = {}
        self.queued = 0
        self.rejected = 0
        self._queues: OrderedDict[str, deque[_Waiter]] = OrderedDict()

    @classmethod
    def from_limits(cls, lim: Limits) -> Gate:
        return cls(lim.max_in_flight, lim.max_queue, lim.queue_timeout_s, lim.tenant_share,
                   lim.max_buffered_bytes)

    def _fits(self, tenant: str, size: int) -> bool:
        return (self.in_flight < self.max_in_flight
                and self.by_tenant.get(tenant, 0) < self.tenant_cap
                and self.buffered + size <= self.max_buffered_bytes)

    def _take(self, tenant: str, size: int) -> Slot:
        self.in_flight += 1
        self.buffered += size
        self.by_tenant[tenant] = self.by_tenant.get(tenant, 0) + 1
        return Slot(self, tenant, size)

    async def enter(self, tenant: str, size: int = 0) -> Slot:
        if not self._queues and self._fits(tenant, size):
            return self._take(tenant, size)  # the common case: no waiting, no allocation
        if self.queued >= self.max_queue or size > self.max_buffered_bytes:
            self.rejected += 1
            raise Overloaded("The gateway is at capacity; retry shortly.", retry_after=1)
        waiter = _Waiter(tenant, size, asyncio.get_running_loop().create_future())
        self._queues.setdefault(tenant, deque()).append(waiter)
        self.queued += 1
        self._grant()
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                return await waiter.future
        except BaseException as exc:
            if waiter.future.done() and not waiter.future.cancelled():
                waiter.future.result().release()  # granted just as we gave up
            else:
                self._forget(waiter)
            if isinstance(exc, TimeoutError):
                self.rejected += 1
                raise Overloaded("The gateway is at capacity; retry shortly.",
                                 retry_after=1) from None
            raise

    def _forget(self, waiter: _Waiter) -> None:
        q = self._queues.get(waiter.tenant)
        if q is not None and waiter in q:
            q.remove(waiter)
            self.queued -= 1
            if not q:
                del self._queues[waiter.tenant]

    def _leave(self, slot: Slot) -> None:
        self.in_flight -= 1
        self.buffered -= slot.size
        n = self.by_tenant[slot.tenant] - 1
        if n:
            self.by_tenant[slot.tenant] = n
        else:
            del self.by_tenant[slot.tenant]
        if self._queues:
            self._grant()

    def _grant(self) -> None:
        """Hand free slots to waiting tenants in round-robin order."""
        progress = True
        while self._queues and self.in_flight < self.max_in_flight and progress:
            progress = False
            for tenant in list(self._queues):
                q = self._queues[tenant]
                w = q[0]
                if not self._fits(tenant, w.size):
                    continue
                q.popleft()
                self.queued -= 1
                if q:
                    self._queues.move_to_end(tenant)  # next turn goes to another tenant
                else:
                    del self._queues[tenant]
                if not w.future.done():
                    w.future.set_result(self._take(tenant, w.size))
                progress = True
                break
