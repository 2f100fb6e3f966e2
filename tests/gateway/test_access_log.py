"""The access log: one JSON line per request, written in batches off the request's path."""

from __future__ import annotations

import asyncio
import io
import logging

import orjson

from gateway.logs import JSONFormatter
from gateway.metrics import AccessLog


class CountingStream(io.StringIO):
    writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def _log(name: str) -> tuple[AccessLog, CountingStream]:
    stream = CountingStream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return AccessLog(logger), stream


def test_lines_in_a_loop_go_out_together_soon_after() -> None:
    access, stream = _log("frugate.test-access-batch")

    async def go() -> tuple[str, str]:
        for i in range(3):
            access.write({"msg": "request", "request_id": f"req_{i}"})
        before = stream.getvalue()
        await asyncio.sleep(AccessLog.FLUSH_S * 3)
        return before, stream.getvalue()

    before, after = asyncio.run(go())
    assert before == ""
    lines = [orjson.loads(x) for x in after.splitlines()]
    assert [x["request_id"] for x in lines] == ["req_0", "req_1", "req_2"]
    assert all(x["msg"] == "request" and x["level"] == "info" for x in lines)
    assert stream.writes == 1


def test_a_full_batch_and_shutdown_flush_at_once() -> None:
    access, stream = _log("frugate.test-access-full")

    async def go() -> int:
        for i in range(AccessLog.MAX_LINES + 1):
            access.write({"msg": "request", "request_id": f"req_{i}"})
        full = len(stream.getvalue().splitlines())
        access.flush()  # what shutdown does
        return full

    assert asyncio.run(go()) == AccessLog.MAX_LINES
    assert len(stream.getvalue().splitlines()) == AccessLog.MAX_LINES + 1


def test_without_a_loop_lines_are_written_at_once() -> None:
    access, stream = _log("frugate.test-access-sync")
    access.write({"msg": "request", "request_id": "req_sync"})
    assert orjson.loads(stream.getvalue())["request_id"] == "req_sync"
