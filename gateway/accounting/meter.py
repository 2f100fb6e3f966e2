"""The meter: prices a request before it runs (admission) and after it ran (settlement)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

from gateway.accounting.admission import Admission, Crossing, Settled, Ticket, make_plan
from gateway.accounting.prices import FREE, ModelPrice
from gateway.accounting.record import Record
from gateway.tenancy.directory import Directory, Principal

log = logging.getLogger("frugate.accounting")

# tiktoken is not the upstream's tokenizer: estimate prompts a little high so the
# reservation covers what the upstream will actually bill.
PROMPT_MARGIN = 1.10


class LedgerSink(Protocol):
    def add(self, record: Record) -> None: ...


class Meter:
    def __init__(self, admission: Admission, directory: Directory, sink: LedgerSink,
                 config_prices: dict[str, ModelPrice], baseline_pool: str | None,
                 cache_price: ModelPrice = FREE,
                 on_crossing: Callable[[Crossing], None] | None = None) -> None:
        self.admission = admission
        self.directory = directory
        self.sink = sink
        self.config_prices = config_prices
        self.baseline_pool = baseline_pool
        self.cache_price = cache_price
        self.on_crossing = on_crossing

    def price(self, pool: str) -> ModelPrice:
        """The pool's price: an admin override if set, else the configured one."""
        return self.directory.prices.get(pool) or self.config_prices.get(pool, FREE)

    def estimate(self, pools: Iterable[str], prompt_tokens: int, max_output: int,
                 *, all_of: bool = False) -> int:
        """Upper bound in micro-dollars over the pools the request may end up on (`all_of`:
        the request may call each of them, as a cascade does)."""
        prompt = int(prompt_tokens * PROMPT_MARGIN) + 8
        costs = [self.price(p).cost(prompt, max_output) for p in pools]
        return sum(costs) if all_of else max(costs, default=0)

    async def admit(self, principal: Principal, request_id: str, micros: int,
                    tokens: int) -> Ticket:
        plan = make_plan(principal, self.directory.budget_rules(principal), request_id, micros,
                         tokens, datetime.now(UTC))
        return await self.admission.admit(plan)

    def finish(self, record: Record) -> None:
        """Fill in cost, baseline and savings from the record's tokens."""
        p, c, cached = record.prompt_tokens, record.completion_tokens, record.cached_tokens
        if record.cache_status == "hit":
            record.cost_micros = self.cache_price.cost(p, c, cached)
        elif record.pool is not None:
            record.cost_micros = self.price(record.pool).cost(p, c, cached) + record.cascade_micros
        base_pool = self.baseline_pool or record.pool
        record.baseline_micros = self.price(base_pool).cost(p, c, cached) if base_pool else 0
        saving = max(0, record.baseline_micros - record.cost_micros)
        if record.cache_status == "hit":
            record.cache_savings_micros = saving
        elif record.route_decision is not None:
            record.routing_savings_micros = saving
        record.large_call = record.pool is not None and record.pool == self.baseline_pool
        record.finished_at = datetime.now(UTC)

    async def settle(self, ticket: Ticket | None, record: Record) -> None:
        """Replace the hold with the actual cost and queue the ledger row. Never raises."""
        await self.start_settle(ticket, record)

    def start_settle(self, ticket: Ticket | None, record: Record) -> Awaitable[None]:
        """`settle`, split so that a response need not wait for Redis: prices the record and
        sends the settlement now; the awaitable finishes it (soft-limit notices, the ledger
        row when Redis did not take it)."""
        self.finish(record)
        pending = None
        if ticket is not None:
            try:
                pending = self.admission.settle(
                    ticket, record.cost_micros,
                    record.prompt_tokens + record.completion_tokens + record.cascade_tokens,
                    record.to_json() if self.admission.durable_events else None)
            except Exception:
                log.exception("settlement of %s failed; the hold expires on its own",
                              record.request_id)
        return self._finish_settle(pending, record)

    async def _finish_settle(self, pending: Awaitable[Settled] | None, record: Record) -> None:
        recorded = False
        try:
            if pending is not None:
                settled = await pending
                recorded = settled.recorded
                for c in settled.crossings:
                    if self.on_crossing is not None:
                        self.on_crossing(c)
        except Exception:
            log.exception("settlement of %s failed; the hold expires on its own",
                          record.request_id)
        if not recorded:  # not delivered through Redis: write it from this process
            self.sink.add(record)
