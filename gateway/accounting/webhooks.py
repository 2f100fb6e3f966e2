"""Soft-limit webhooks: sent once per budget period, off the hot path, signed, retried.

The meter calls `on_crossing` (synchronously, during settlement) when a request's cost takes a
budget past its soft limit. The notifier only queues it; a background task then claims the
notice in `soft_limit_notices` (insert-if-absent on scope, id and period start, so when two
replicas see a crossing only one sends) and POSTs the JSON event to the budget's webhook_url:

    {"event": "budget.soft_limit", "id", "scope", "scope_id", "period", "period_start",
     "spent_usd", "limit_usd", "spent_micros", "limit_micros", "pct", "spent_pct", "ts"}

with `X-Frugate-Signature: sha256=<hex HMAC-SHA256(webhook_secret, body)>`. Any non-2xx answer
or network error is retried with exponential backoff; the attempts are recorded on the notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.accounting.admission import Crossing
from gateway.accounting.periods import Period
from gateway.accounting.prices import MICROS
from gateway.storage.models import SoftLimitNotice
from gateway.tenancy.directory import Directory

log = logging.getLogger("frugate.webhooks")

EVENT = "budget.soft_limit"
SIGNATURE_HEADER = "X-Frugate-Signature"
_PERIODS: dict[str, Period] = {"d": "day", "w": "week", "m": "month", "t": "total"}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


def period_of(tag: str) -> tuple[Period, datetime]:
    """The period kind and start encoded in a budget period tag such as `d20261128`."""
    start = datetime.strptime(tag[1:9], "%Y%m%d").replace(tzinfo=UTC)
    return _PERIODS[tag[0]], start


def event_body(c: Crossing, soft_limit_pct: int | None, now: datetime) -> bytes:
    period, start = period_of(c.tag)
    return orjson.dumps({
        "event": EVENT,
        "id": f"{c.scope}:{c.scope_id}:{c.tag}",
        "scope": c.scope,
        "scope_id": c.scope_id,
        "period": period,
        "period_start": start.isoformat(),
        "spent_usd": c.spent_micros / MICROS,
        "limit_usd": c.limit_micros / MICROS,
        "spent_micros": c.spent_micros,
        "limit_micros": c.limit_micros,
        "pct": soft_limit_pct,
        "spent_pct": round(100 * c.spent_micros / c.limit_micros, 2) if c.limit_micros else None,
        "ts": now.isoformat(),
    })


class WebhookNotifier:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], directory: Directory,
                 secret: str | None, *, attempts: int = 6, backoff_s: float = 0.5,
                 timeout_s: float = 5.0, client: httpx.AsyncClient | None = None) -> None:
        self.sessions = sessions
        self.directory = directory
        self.secret = secret
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.client = client or httpx.AsyncClient(timeout=timeout_s)
        self._own_client = client is None
        self._queue: asyncio.Queue[Crossing] = asyncio.Queue(maxsize=10_000)
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[bool]] = set()
        if secret is None:
            log.info("webhook_secret is not set: soft-limit webhooks are sent unsigned")

    def on_crossing(self, crossing: Crossing) -> None:
        """The meter's callback: never blocks and never raises."""
        try:
            self._queue.put_nowait(crossing)
        except asyncio.QueueFull:
            log.error("webhook queue full; dropped the soft-limit notice for %s %s",
                      crossing.scope, crossing.scope_id)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for t in list(self._sends):
            t.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        if self._own_client:
            await self.client.aclose()

    async def drain(self) -> None:
        """Wait until every queued crossing has been handled (for tests and shutdown)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            crossing = await self._queue.get()
            task = asyncio.create_task(self.deliver(crossing))
            self._sends.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[bool]) -> None:
        self._sends.discard(task)
        self._queue.task_done()

    async def deliver(self, c: Crossing) -> bool:
        """Claim and send one notice; False when there is nothing to send or it failed."""
        rule = self.directory.budgets.get((c.scope, c.scope_id))
        if rule is None or not rule.webhook_url:
            return False
        _, start = period_of(c.tag)
        try:
            if not await self._claim(c.scope, c.scope_id, start):
                return False  # another replica (or an earlier crossing) has it
            body = event_body(c, rule.soft_limit_pct, datetime.now(UTC))
            return await self._send(rule.webhook_url, body, c, start)
        except Exception:
            log.exception("soft-limit webhook for %s %s failed", c.scope, c.scope_id)
            return False

    async def _claim(self, scope: str, scope_id: str, start: datetime) -> bool:
        try:
            async with self.sessions() as s, s.begin():
                s.add(SoftLimitNotice(scope=scope, scope_id=scope_id, period_start=start,
                                      sent_at=None, attempts=0))
        except IntegrityError:
            return False
        return True

    async def _send(self, url: str, body: bytes, c: Crossing, start: datetime) -> bool:
        headers = {"content-type": "application/json", "user-agent": "frugate-webhooks",
                   "x-frugate-event": EVENT}
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            ok = False
            try:
                resp = await self.client.post(url, content=body, headers=headers)
                ok = resp.is_success
                why: Any = resp.status_code
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            await self._record(c, start, attempt, ok)
            if ok:
                return True
            if attempt < self.attempts:
                log.info("soft-limit webhook for %s %s: attempt %d failed (%s); retry in %.1fs",
                         c.scope, c.scope_id, attempt, why, delay)
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("soft-limit webhook for %s %s gave up after %d attempts",
                    c.scope, c.scope_id, self.attempts)
        return False

    async def _record(self, c: Crossing, start: datetime, attempt: int, ok: bool) -> None:
        t = SoftLimitNotice
        values: dict[str, Any] = {"attempts": attempt}
        if ok:
            values["sent_at"] = datetime.now(UTC)
        async with self.sessions() as s, s.begin():
            await s.execute(update(t).where(t.scope == c.scope, t.scope_id == c.scope_id,
                                            t.period_start == start).values(**values))
