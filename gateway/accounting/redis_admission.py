"""Admission shared by every gateway replica: one Lua script in Redis per request.

Keys are hash-tagged per tenant (`<prefix>:{t:<tenant>}:...`) so each script touches one Redis
Cluster slot. Settlement and the ledger event go to Redis in one pipelined round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from gateway.accounting.admission import (
    Crossing,
    Hold,
    Plan,
    Rate,
    Settled,
    Ticket,
    budget_error,
    rate_error,
    rate_retry_after,
    resolved,
)
from gateway.accounting.periods import Period
from gateway.accounting.resp import Command, RespLink
from gateway.errors import Overloaded

log = logging.getLogger("frugate.accounting")

LUA = Path(__file__).resolve().parent / "lua"
# Budget counters outlive their period by this much so reports can still read them.
COUNTER_GRACE_S = 40 * 86400
# Settlements that could not reach Redis, kept to release their holds once it is back.
MAX_UNSETTLED = 100_000


def ledger_stream(prefix: str) -> str:
    return f"{prefix}:ledger"


def _rate_name(r: Rate) -> str:
    return f"{r.scope}:{r.scope_id}:{r.unit}"


class RedisAdmission:
    durable_events = True

    def __init__(self, client: aioredis.Redis, *, prefix: str = "frugate",
                 hold_ttl_s: float = 900.0, fail_open: bool = False) -> None:
        self.r = client
        self.prefix = prefix
        self.hold_ttl_s = hold_ttl_s
        self.fail_open = fail_open
        self.stream = ledger_stream(prefix)
        self._admit = client.register_script((LUA / "admit.lua").read_text())
        self._settle = client.register_script((LUA / "settle.lua").read_text())
        # The hot path (admit, settle) skips redis-py where it can: see gateway/accounting/resp.py.
        self.link = RespLink.from_client(client)
        self._unsettled: dict[str, tuple[Ticket, int, int]] = {}
        self._retrying: asyncio.Task[None] | None = None

    def tag(self, tenant_id: str) -> str:
        """Every key of one tenant shares this hash tag (one Redis Cluster slot)."""
        return f"{self.prefix}:{{t:{tenant_id}}}"

    def budget_key(self, tenant_id: str, h: Hold | tuple[str, str, str]) -> str:
        scope, sid, ptag = (h.scope, h.scope_id, h.tag) if isinstance(h, Hold) else h
        return f"{self.tag(tenant_id)}:b:{scope}:{sid}:{ptag}"

    async def admit(self, plan: Plan) -> Ticket:
        t = self.tag(plan.tenant_id)
        keys = [f"{t}:holds", f"{t}:holdrec"] + [self.budget_key(plan.tenant_id, h)
                                                 for h in plan.holds]
        args: list[Any] = [plan.request_id, plan.micros, plan.tokens, int(self.hold_ttl_s),
                           len(plan.holds), f"{t}:w:", len(plan.rates)]
        for h in plan.holds:
            # Counters outlive their period a while (reports read them); `total` never expires.
            ttl = int(h.retry_after_s) + COUNTER_GRACE_S if h.tag[0] != "t" else 0
            args += [_or_none(h.limit_micros), _or_none(h.limit_tokens), ttl]
        for r in plan.rates:
            args += [_rate_name(r), r.limit, 1 if r.unit == "rpm" else plan.tokens]
        try:
            res = (await self._eval(self._admit, self._call(self._admit, keys, args)))[0]
        except RedisError as exc:
            return self._unavailable(plan, exc)
        verdict = res[0].decode() if isinstance(res[0], bytes) else res[0]
        if verdict == "budget":
            raise budget_error(plan.holds[int(res[1]) - 1])
        if verdict == "rate":
            r = plan.rates[int(res[1]) - 1]
            cur, prev, frac = float(res[2]), float(res[3]), float(res[4])
            need = 1 if r.unit == "rpm" else plan.tokens
            raise rate_error(r, rate_retry_after(prev, cur, need, r.limit, frac))
        return Ticket(plan, window=int(res[2]))

    def _unavailable(self, plan: Plan, exc: Exception) -> Ticket:
        if not self.fail_open:
            log.error("admission refused: Redis unavailable (%s)", exc)
            raise Overloaded("Admission control is unavailable; try again shortly.",
                             retry_after=2) from None
        log.warning("admission open without Redis (%s): %s is not counted", exc,
                    plan.request_id)
        return Ticket(plan, degraded=True)

    def settle(self, ticket: Ticket, micros: int, tokens: int,
               event: bytes | None = None) -> Awaitable[Settled]:
        if ticket.settled:
            return resolved(Settled([]))
        ticket.settled = True
        if ticket.degraded:
            return resolved(Settled([], recorded=False))
        call = self._settle_call(ticket, micros, tokens, only_if_held=False)
        extra: list[Command] = [("XADD", self.stream, "*", "r", event)] if event else []
        # Written to Redis now (when connected): what this process sends next comes after it.
        sent = self.link.send_now(call, *extra) if self.link is not None else None
        return self._settled(ticket, micros, tokens, event is not None, call, extra, sent)

    async def _settled(self, ticket: Ticket, micros: int, tokens: int, recorded: bool,
                       call: Command, extra: list[Command],
                       sent: list[asyncio.Future[Any]] | None) -> Settled:
        try:
            out = (await self._eval(self._settle, call, extra, sent=sent))[0]
        except RedisError:
            self._retry_later(ticket, micros, tokens)
            raise
        crossings = []
        for i, h in enumerate(ticket.plan.holds):
            before, after = int(out[2 * i]), int(out[2 * i + 1])
            if h.soft_limit_pct and h.limit_micros:
                soft = h.limit_micros * h.soft_limit_pct // 100
                if before < soft <= after:
                    crossings.append(Crossing(h.scope, h.scope_id, h.tag, after, h.limit_micros))
        return Settled(crossings, recorded=recorded)

    def _settle_call(self, ticket: Ticket, micros: int, tokens: int,
                     only_if_held: bool) -> Command:
        plan = ticket.plan
        t = self.tag(plan.tenant_id)
        keys = [f"{t}:holds", f"{t}:holdrec"] + [self.budget_key(plan.tenant_id, h)
                                                 for h in plan.holds]
        tpm = [_rate_name(r) for r in plan.rates if r.unit == "tpm"]
        window = ticket.window
        adjust = tokens - plan.tokens if tpm and window is not None else 0
        args: list[Any] = [plan.request_id, micros, tokens, len(plan.holds), adjust,
                           window if window is not None else 0, f"{t}:w:",
                           1 if only_if_held else 0, *tpm]
        return self._call(self._settle, keys, args)

    def _retry_later(self, ticket: Ticket, micros: int, tokens: int) -> None:
        """Redis failed mid-settlement: settle again once it is back, so the hold does not
        pin the budget until it expires. Applied only if the hold is still there (the first
        attempt may have run with its reply lost), so spend is never counted twice."""
        if len(self._unsettled) < MAX_UNSETTLED:
            self._unsettled[ticket.plan.request_id] = (ticket, micros, tokens)
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry_settlements())

    async def _retry_settlements(self) -> None:
        delay = 0.2
        while self._unsettled:
            await asyncio.sleep(delay)
            for rid, (ticket, micros, tokens) in list(self._unsettled.items()):
                call = self._settle_call(ticket, micros, tokens, only_if_held=True)
                try:
                    await self._eval(self._settle, call)
                except RedisError:
                    delay = min(5.0, delay * 2)
                    break
                del self._unsettled[rid]
            else:
                delay = 0.2
        log.info("settlements deferred by a Redis outage are applied")

    @staticmethod
    def _call(script: Any, keys: list[str], args: list[Any]) -> Command:
        return ("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _eval(self, script: Any, call: Command, extra: list[Command] | None = None,
                    sent: list[asyncio.Future[Any]] | None = None) -> list[Any]:
        """`call` (the script's EVALSHA) plus `extra` commands in one round trip; their replies
        in order. `sent`: the replies to come of those, already written by `RespLink.send_now`.

        The script is loaded only when Redis answers NOSCRIPT (after a restart or a flush);
        redis-py's Script object in a pipeline would ask SCRIPT EXISTS first on every call.
        """
        if sent is not None:
            res = [await f for f in sent]
        else:
            res = await self._send(call, *(extra or []))
        if isinstance(res[0], NoScriptError) or (
                isinstance(res[0], ResponseError) and str(res[0]).startswith("NOSCRIPT")):
            await self.r.script_load(script.script)
            res[0] = (await self._send(call))[0]  # only the script: the XADD already ran
        for item in res:
            if isinstance(item, Exception):
                raise item
        return res

    async def _send(self, *commands: Command) -> list[Any]:
        if self.link is not None:
            return await self.link.execute(*commands)
        async with self.r.pipeline(transaction=False) as pipe:
            for cmd in commands:
                pipe.execute_command(*cmd)
            return list(await pipe.execute(raise_on_error=False))

    async def usage(self, scope: str, scope_id: str, tag_: str,
                    tenant_id: str) -> tuple[int, int, int]:
        v = await self.r.hmget(self.budget_key(tenant_id, (scope, scope_id, tag_)),
                               ["spent", "held", "tok"])
        return int(v[0] or 0), int(v[1] or 0), int(v[2] or 0)

    async def open_holds(self, tenant_id: str) -> int:
        """Holds not yet settled (expired ones included until the next admission sweeps)."""
        return int(await self.r.zcard(f"{self.tag(tenant_id)}:holds"))

    async def close(self) -> None:
        if self.link is not None:
            await self.link.close()
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying


def _or_none(v: int | None) -> int:
    return -1 if v is None else v


def _period_of(ptag: str) -> Period:
    return {"d": "day", "w": "week", "m": "month", "t": "total"}[ptag[0]]  # type: ignore[return-value]

