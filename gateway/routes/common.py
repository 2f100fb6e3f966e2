"""Helpers shared by the route modules: body reading, the state dependency, OpenAPI bodies."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel

from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.state import State

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
