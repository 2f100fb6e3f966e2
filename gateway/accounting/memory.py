"""In-process admission for the embedded default (one gateway process, no Redis).

Runs on the event loop with no awaits between check and update, so each call is atomic.
"""

from __future__ import annotations

import asyncio
import heapq
import time

from gateway.accounting.admission import (
    WINDOW_S,
    Crossing,
    Plan,
    Settled,
    Ticket,
    budget_error,
    rate_error,
    rate_retry_after,
    resolved,
    window_count,
)

Counter = tuple[str, str, str]  # scope, scope_id, period tag


class MemoryAdmission:
    durable_events = False

    def __init__(self, hold_ttl_s: float = 900.0) -> None:
        self.hold_ttl_s = hold_ttl_s
        self.spent: dict[Counter, list[int]] = {}  # [micros, tokens]
        self.held: dict[Counter, list[int]] = {}
        self.open: dict[str, Plan] = {}
        self._expiry: list[tuple[float, str]] = []
        self._windows: dict[tuple[str, str, str], list[float]] = {}  # [window no, prev, cur]

    async def admit(self, plan: Plan) -> Ticket:
        now = time.time()
        self._expire(now)
        for h in plan.holds:
            c = (h.scope, h.scope_id, h.tag)
            spent, held = self.spent.get(c, [0, 0]), self.held.get(c, [0, 0])
            if h.limit_micros is not None and spent[0] + held[0] + plan.micros > h.limit_micros:
                raise budget_error(h)
            if h.limit_tokens is not None and spent[1] + held[1] + plan.tokens > h.limit_tokens:
                raise budget_error(h)
        for r in plan.rates:
            prev, cur, frac = self._window(r.scope, r.scope_id, r.unit, now)
            need = 1 if r.unit == "rpm" else plan.tokens
            if window_count(prev, cur, frac) + need > r.limit:
                raise rate_error(r, rate_retry_after(prev, cur, need, r.limit, frac))
        for h in plan.holds:
            held = self.held.setdefault((h.scope, h.scope_id, h.tag), [0, 0])
            held[0] += plan.micros
            held[1] += plan.tokens
        for r in plan.rates:
            self._windows[(r.scope, r.scope_id, r.unit)][2] += 1 if r.unit == "rpm" else plan.tokens
        self.open[plan.request_id] = plan
        heapq.heappush(self._expiry, (now + self.hold_ttl_s, plan.request_id))
        return Ticket(plan)

    def settle(self, ticket: Ticket, micros: int, tokens: int,
               event: bytes | None = None) -> asyncio.Future[Settled]:
        return resolved(self._settle(ticket, micros, tokens))

    def _settle(self, ticket: Ticket, micros: int, tokens: int) -> Settled:
        if ticket.settled:
            return Settled([])
        ticket.settled = True
        plan = ticket.plan
        if self.open.pop(plan.request_id, None) is not None:
            self._release(plan)
        crossings = []
        for h in plan.holds:
            spent = self.spent.setdefault((h.scope, h.scope_id, h.tag), [0, 0])
            before = spent[0]
            spent[0] += micros
            spent[1] += tokens
            if h.soft_limit_pct and h.limit_micros:
                soft = h.limit_micros * h.soft_limit_pct // 100
                if before < soft <= spent[0]:
                    crossings.append(Crossing(h.scope, h.scope_id, h.tag, spent[0],
                                              h.limit_micros))
        now = time.time()
        for r in plan.rates:
            if r.unit == "tpm" and tokens != plan.tokens:
                self._window(r.scope, r.scope_id, r.unit, now)
                w = self._windows[(r.scope, r.scope_id, r.unit)]
                w[2] = max(0.0, w[2] + tokens - plan.tokens)
        return Settled(crossings)

    async def usage(self, scope: str, scope_id: str, tag: str,
                    tenant_id: str = "") -> tuple[int, int, int]:
        self._expire(time.time())
        spent = self.spent.get((scope, scope_id, tag), [0, 0])
        held = self.held.get((scope, scope_id, tag), [0, 0])
        return spent[0], held[0], spent[1]

    async def close(self) -> None:
        return None

    def open_holds(self) -> int:
        return len(self.open)

    def _release(self, plan: Plan) -> None:
        for h in plan.holds:
            held = self.held.get((h.scope, h.scope_id, h.tag))
            if held is not None:
                held[0] -= plan.micros
                held[1] -= plan.tokens

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, rid = heapq.heappop(self._expiry)
            plan = self.open.pop(rid, None)
            if plan is not None:
                self._release(plan)

    def _window(self, scope: str, sid: str, unit: str, now: float) -> tuple[float, float, float]:
        n = int(now // WINDOW_S)
        w = self._windows.get((scope, sid, unit))
        if w is None:
            w = self._windows[(scope, sid, unit)] = [n, 0.0, 0.0]
        elif w[0] != n:
            w[1] = w[2] if w[0] == n - 1 else 0.0
            w[0], w[2] = n, 0.0
        return w[1], w[2], (now % WINDOW_S) / WINDOW_S
