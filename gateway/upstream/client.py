"""Sending a request to a pool: replica choice, retries before the first byte, error mapping.

httpx exceptions and upstream error bodies are turned into `gateway.errors` here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from gateway.config import Upstream as UpstreamSettings
from gateway.errors import (
    ClientClosed,
    FrugateError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_for_status,
)
from gateway.upstream.pool import Pool
from gateway.upstream.replica import Replica
from gateway.upstream.transport import Exchange, Tap

log = logging.getLogger("frugate.upstream")

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class Opened:
    """An upstream response whose status is 2xx and whose first bytes have arrived."""

    pool: Pool
    replica: Replica
    conn: Exchange
    attempts: int
    tap: Tap
    # Non-streaming: the whole body. Streaming: the first raw chunk (`chunks()` yields all).
    body: bytes = b""
    _iter: AsyncIterator[bytes] | None = field(default=None, repr=False)
    _released: bool = field(default=False, repr=False)

    @property
    def streaming(self) -> bool:
        """An SSE stream still to relay (else `body` is the whole answer)."""
        return self._iter is not None

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.body:
            yield self.body
        if self._iter is not None:
            async for chunk in self._iter:
                yield chunk

    async def half_close(self) -> None:
        """Tell the replica we are gone (it aborts the request) but keep reading what it sent.

        vLLM notices EOF on the request stream as a disconnect and aborts the sequence; the
        tokens it already wrote still reach us, so what we bill equals what it generated.
        """
        if not self.tap.half_close():
            await self.aclose()

    async def aclose(self) -> None:
        """Done with the response: the connection goes back to its pool if fully read."""
        self.conn.release()
        self.release()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.replica.in_flight -= 1


async def open_request(
    pool: Pool,
    path: str,
    body: bytes,
    *,
    stream: bool,
    settings: UpstreamSettings,
    request_id: str,
    tap: Tap | None = None,
) -> Opened:
    """Send `body` to a replica of `pool`, retrying elsewhere while nothing reached the client.

    Connect errors, 5xx/429, dropped connections and first-byte timeouts are retried on another
    replica (bounded, with backoff); 4xx answers are the client's problem and are raised at once.
    """
    tap = tap or Tap()
    token = tap.arm()
    try:
        return await _attempts(pool, path, body, stream, settings, request_id, tap)
    finally:
        Tap.disarm(token)


async def _attempts(pool: Pool, path: str, body: bytes, stream: bool,
                    settings: UpstreamSettings, request_id: str, tap: Tap) -> Opened:
    tried: list[Replica] = []
    last: FrugateError | None = None
    headers = pool.request_headers + b"x-request-id: " + request_id.encode() + b"\r\n"
    path_b = path.encode()
    connect_s, read_s = pool.config.timeouts.connect_s, pool.config.timeouts.first_byte_s
    for attempt in range(settings.retries + 1):
        replica = pool.pick(exclude=tried)
        if replica is None:
            break
        if attempt:
            await asyncio.sleep(settings.retry_backoff_ms / 1000 * (2 ** (attempt - 1)))
        tried.append(replica)
        replica.in_flight += 1
        opened: Opened | None = None
        try:
            conn = await pool.transport.post(replica.origin, path_b, headers, body, connect_s,
                                             read_s)
            opened = Opened(pool, replica, conn, attempt + 1, tap)
            if conn.status >= 400:
                err_body = await conn.read(read_s)
                await opened.aclose()
                err = upstream_error(conn.status, err_body, secret=pool.config.api_key)
                if conn.status not in _RETRYABLE_STATUS:
                    replica.record_success()  # the replica is fine; the request is not
                    raise err
                _fail(replica, settings, f"HTTP {conn.status}")
                last = err
                continue
            if stream:
                it = conn.body(read_s)
                opened._iter = it
                opened.body = await anext(it, b"")
            else:
                opened.body = await conn.read(read_s)
                await opened.aclose()
            replica.record_success()
            return opened
        except FrugateError:
            raise
        except httpx.HTTPError as exc:
            if opened is not None:
                await opened.aclose()
            else:
                replica.in_flight -= 1
            if tap.abandoned:  # we hung up on purpose (the client left): no retry, no blame
                raise ClientClosed("The client closed the request.") from None
            last = _classify(exc, replica, settings, pool.name)
        except BaseException:
            if opened is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(opened.aclose())
            else:
                replica.in_flight -= 1
            raise
        if tap.abandoned:
            raise ClientClosed("The client closed the request.")
    if last is None:
        last = UpstreamUnavailable(f"No healthy replica is available in pool '{pool.name}'.",
                                   retry_after=1)
    raise last


def _classify(exc: httpx.HTTPError, replica: Replica, settings: UpstreamSettings,
              pool: str) -> FrugateError:
    """Count a transport failure against the replica; return what the client would see."""
    if isinstance(exc, httpx.TimeoutException):
        connect = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
        _fail(replica, settings, f"{'connect' if connect else 'read'} timeout")
        return UpstreamTimeout(f"The upstream model server in pool '{pool}' timed out.")
    _fail(replica, settings, f"{type(exc).__name__}: {exc}",
          hard=isinstance(exc, httpx.ConnectError))
    return UpstreamUnavailable(f"The upstream model server in pool '{pool}' is unavailable.")


def _fail(replica: Replica, settings: UpstreamSettings, reason: str, hard: bool = False) -> None:
    if replica.record_failure(reason, threshold=settings.eject_after_failures,
                              base_s=settings.eject_base_s, max_s=settings.eject_max_s, hard=hard):
        log.warning("ejected replica %s of pool %s: %s", replica.url, replica.pool, reason)


def error_fields(payload: Any) -> tuple[str, str | None, str | None]:
    """(message, param, code) from any error shape vLLM or a proxy may send."""
    if isinstance(payload, dict):
        inner = payload.get("error", payload)
        if isinstance(inner, dict):
            msg = inner.get("message") or inner.get("detail") or inner.get("msg")
            if msg is not None:
                code = inner.get("code")
                param = inner.get("param")
                return (str(msg), None if param is None else str(param),
                        None if code is None or isinstance(code, int) else str(code))
        if isinstance(inner, str):
            return inner, None, None
        detail = payload.get("detail")
        if detail is not None:
            text = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
            return text, None, None
    if isinstance(payload, str):
        return payload, None, None
    return "The upstream model server returned an error.", None, None


def upstream_error(status: int, raw: bytes, secret: SecretStr | None = None) -> FrugateError:
    """Normalise an upstream error response (JSON of any shape, or plain text)."""
    if status in (401, 403):
        # Our upstream credentials are wrong: the operator's problem, and a proxy may echo
        # the rejected key in its message, so none of it goes to the client.
        return UpstreamError(f"The upstream model server refused the gateway (HTTP {status}).")
    try:
        payload: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        payload = raw.decode("utf-8", "replace").strip()[:500] or None
    message, param, code = error_fields(payload)
    message = redact(message, secret)
    if status >= 500:
        return UpstreamError(f"The upstream model server failed (HTTP {status}): {message}"[:1000])
    return error_for_status(status, message[:1000], param=param, code=code)


def redact(message: str, secret: SecretStr | None) -> str:
    """An upstream message with the pool's API key (if it echoed it) blanked out."""
    if secret is not None and (value := secret.get_secret_value()) and value in message:
        return message.replace(value, "[redacted]")
    return message
