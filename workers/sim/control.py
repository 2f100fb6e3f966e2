"""The /sim/ control routes for tests: faults, stats, usage, reset.

GET  /sim/faults          current faults
POST /sim/faults          change them: {"error_rate": 0.1, "stall_rate": 0.5, "stall_ms": 0,
                          "freeze_ms": 2000, "unhealthy": true, "crash": true, "reset": true}
GET  /sim/stats           requests received/completed/aborted/errored, running, waiting
GET  /sim/usage?limit=&id= tokens reported, in total and per recent request
POST /sim/reset           forget stats and usage, clear every fault
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from workers.sim.asgi import ClientGone, Receive, Scope, Send, read_body, send_json
from workers.sim.config import Faults, SimConfig
from workers.sim.engine import Engine
from workers.sim.ledger import Stats, UsageLedger
from workers.sim.protocol import error_body

CRASH_DELAY_S: Final = 0.05
FAULT_FIELDS: Final[Mapping[str, type]] = MappingProxyType(
    {
        "error_rate": float,
        "error_status": int,
        "midstream_error_rate": float,
        "stall_rate": float,
        "stall_ms": float,
        "stall_after_tokens": int,
        "unhealthy": bool,
    }
)
RATES: Final = ("error_rate", "midstream_error_rate", "stall_rate")

logger = logging.getLogger("workers.sim")


async def json_body(receive: Receive, send: Send) -> dict[str, Any] | None:
    """The request's JSON object, or None after answering 400 (or if the client left)."""
    try:
        body = orjson.loads(await read_body(receive) or b"{}")
    except ClientGone:
        return None
    except orjson.JSONDecodeError as exc:
        await send_json(send, 400, error_body(f"JSON decode error: {exc}", 400))
        return None
    if not isinstance(body, dict):
        await send_json(send, 400, error_body("the request body must be a JSON object", 400))
        return None
    return body


class ControlRoutes:
    def __init__(self, engine: Engine, config: SimConfig) -> None:
        self.engine = engine
        self.config = config

    async def get_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        await send_json(send, 200, self.engine.faults.to_dict(loop.time()))

    async def set_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await json_body(receive, send)
        if body is None:
            return
        loop = asyncio.get_running_loop()
        try:
            crash = apply_faults(self.engine.faults, body, loop.time())
        except (TypeError, ValueError) as exc:
            await send_json(send, 400, error_body(str(exc), 400))
            return
        self.engine.wake()
        await send_json(send, 200, self.engine.faults.to_dict(loop.time()))
        if crash:
            logger.warning("crash requested through /sim/faults: exiting")
            loop.call_later(CRASH_DELAY_S, os._exit, 1)

    async def stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        engine = self.engine
        data: dict[str, Any] = engine.stats.to_dict()
        data.update(
            running=engine.num_running,
            waiting=engine.num_waiting,
            kv_cache_usage=engine.kv_usage,
            model=self.config.model,
            profile=self.config.profile,
            pid=os.getpid(),
        )
        await send_json(send, 200, data)

    async def usage(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        limit = int(query.get("limit", ["100"])[0])
        request_id = query.get("id", [None])[0]
        await send_json(send, 200, self.engine.ledger.to_dict(limit, request_id))

    async def requests(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The last request bodies received (newest last), e.g. to see a grounding message."""
        query = parse_qs(scope.get("query_string", b"").decode())
        limit = int(query.get("limit", ["20"])[0])
        await send_json(send, 200, {"data": list(self.engine.recent_bodies)[-limit:]})

    async def reset(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forget stats, usage and faults (Prometheus counters stay monotonic, as in vLLM)."""
        engine = self.engine
        in_flight = engine.stats.in_flight
        engine.stats = Stats(in_flight=in_flight)
        engine.ledger = UsageLedger()
        engine.recent_bodies.clear()
        clear_faults(engine.faults)
        engine.wake()
        await send_json(send, 200, {"reset": True})


def apply_faults(faults: Faults, body: Mapping[str, Any], now: float) -> bool:
    """Apply a /sim/faults body; returns True when the caller asked for a crash.

    Raises ValueError (and changes nothing) when a value is invalid.
    """
    values = {name: kind(body[name]) for name, kind in FAULT_FIELDS.items() if name in body}
    for name in RATES:
        if not 0.0 <= values.get(name, 0.0) <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1")
    crash_after = body.get("crash_after")
    freeze_ms = float(body["freeze_ms"]) if "freeze_ms" in body else None
    if body.get("reset"):
        clear_faults(faults)
    for name, value in values.items():
        setattr(faults, name, value)
    if "crash_after" in body:
        faults.crash_after = None if crash_after is None else int(crash_after)
    if freeze_ms is not None:
        faults.freeze_until = now + freeze_ms / 1000.0
    return bool(body.get("crash"))


def clear_faults(faults: Faults) -> None:
    fresh = Faults()
    for name in (*FAULT_FIELDS, "crash_after", "freeze_until"):
        setattr(faults, name, getattr(fresh, name))
