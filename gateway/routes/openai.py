"""The OpenAI-compatible surface: /v1/chat/completions, /v1/completions, /v1/models, ..."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.pipeline import Call
from gateway.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.responses import JSONBytes
from gateway.routes.common import StateDep, json_body, read_body
from gateway.routes.fastpath import serve
from gateway.tenancy import authenticate

router = APIRouter(prefix="/v1", tags=["openai"])


async def _proxy(request: Request, endpoint: str) -> Any:
    # FrugateApp normally serves these two routes before FastAPI sees them
    # (routes/fastpath.py); this runs the same code for anything that goes through FastAPI.
    return await serve(request.app.state.frugate, request.scope, request.receive, endpoint,
                       request.scope["state"]["request_id"])


@router.post("/chat/completions", openapi_extra=json_body(ChatCompletionRequest),
             summary="Create a chat completion (OpenAI-compatible)")
async def chat_completions(request: Request) -> Response:
    return await _proxy(request, "chat")  # type: ignore[no-any-return]


@router.post("/completions", openapi_extra=json_body(CompletionRequest),
             summary="Create a text completion (OpenAI-compatible)")
async def completions(request: Request) -> Response:
    return await _proxy(request, "completions")  # type: ignore[no-any-return]


@router.post("/embeddings", openapi_extra=json_body(EmbeddingRequest),
             summary="Create embeddings (OpenAI-compatible)")
async def embeddings(request: Request, state: StateDep) -> Response:
    started = time.perf_counter()
    body = await read_body(request, state.settings.limits.max_body_bytes)
    call = Call(request.scope["state"]["request_id"], "embeddings", body,
                {"authorization": request.headers.get("authorization", "")}, started)
    return await state.embeddings.run(call)  # type: ignore[no-any-return]


@router.get("/models", summary="List the models this key can use")
async def list_models(request: Request, state: StateDep) -> JSONBytes:
    principal = authenticate(state.directory, request.headers.get("authorization"))
    return JSONBytes(state.models_listing(principal))
