"""Helpers shared by the route modules: body reading, the state dependency, OpenAPI bodies."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel
from starlette.types import Receive

from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.state import State

T = TypeVar("T")


async def get_state(request: Request) -> State:  # async: FastAPI runs sync deps in a thread
    return request.app.state.frugate  # type: ignore[no-any-return]


StateDep = Annotated[State, Depends(get_state)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused early when it is larger than `limit` bytes."""
    declared = request.headers.get("content-length")
    return await read_raw_body(request.receive,
                               declared.encode("latin-1") if declared is not None else None, limit)


async def read_raw_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """The body from ASGI messages; an oversized one is refused before or while reading."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequest("Invalid Content-Length header.") from None
        if size > limit:
            raise PayloadTooLarge(f"The request body is too large ({size} bytes; at most {limit}).")
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError  # the client left while sending its request
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"The request body is too large (more than {limit} bytes).")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI description of a JSON body the route parses itself (for docs and schemathesis)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}
