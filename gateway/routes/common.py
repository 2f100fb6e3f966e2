"""Helpers shared by the route modules: body reading, the state dependency, OpenAPI bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.state import State
from gateway.upstream.transport import Tap

T = TypeVar("T")


async def get_state(request: Request) -> State:  # async: FastAPI runs sync deps in a thread
    return request.app.state.frugate  # type: ignore[no-any-return]


StateDep = Annotated[State, Depends(get_state)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused early when it is larger than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequest("Invalid Content-Length header.") from None
        if size > limit:
            raise PayloadTooLarge(f"The request body is too large ({size} bytes; at most {limit}).")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"The request body is too large (more than {limit} bytes).")
        chunks.append(chunk)
    return b"".join(chunks)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI description of a JSON body the route parses itself (for docs and schemathesis)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


async def until_disconnect(request: Request, tap: Tap,
                           work: Callable[[], Awaitable[T]]) -> T | Response:
    """Run `work`; if the client goes away first, stop it.

    Once a request is on the wire to a replica, its connection is half-closed instead of
    cancelled: the replica aborts, and whatever it had already produced is still billed.
    Before that, the work is simply cancelled.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    def on_message(f: asyncio.Future[Any]) -> None:
        nonlocal gone
        if not f.cancelled() and f.exception() is None and f.result()["type"] == "http.disconnect":
            if tap.stream is not None:
                tap.half_close()
            else:
                gone = True
                task.cancel()

    watch = asyncio.ensure_future(request.receive())
    watch.add_done_callback(on_message)
    try:
        return await work()
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
        return Response(status_code=499)
    finally:
        watch.remove_done_callback(on_message)
        watch.cancel()
