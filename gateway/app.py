"""The ASGI application: routes, error rendering and the lifespan that builds the state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from embedder import Embedder
from gateway import __version__
from gateway.config import Settings
from gateway.errors import FrugateError, InvalidRequest, NotFound
from gateway.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.protocol.common import validation_error
from gateway.responses import JSONBytes, render_error
from gateway.routes import admin, dashboard, fastpath, health, insights, openai, rag, usage
from gateway.routes.fastpath import ENDPOINTS
from gateway.state import build_state, close_state

log = logging.getLogger("frugate")


def create_app(settings: Settings, *, embedder: Embedder | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await build_state(settings, embedder=embedder)
        app.state.frugate = state
        app.state.loop = asyncio.get_running_loop()
        log.info("frugate ready", extra={"fields": {"pools": list(state.pools)}})
        try:
            yield
        finally:
            await close_state(state)

    app = FrugateApp(title="frugate", version=__version__, lifespan=lifespan,
                     description="OpenAI-compatible LLM gateway for self-hosted vLLM pools.")
    app.include_router(openai.router)
    app.include_router(health.router)
    app.include_router(usage.router)
    app.include_router(admin.router)
    app.include_router(insights.admin_router)
    app.include_router(insights.team_router)
    app.include_router(dashboard.router)
    app.include_router(rag.router)
    app.add_exception_handler(FrugateError, _frugate_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _server_error)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["*"], allow_headers=["*"])
    from gateway.middleware import RequestId

    app.add_middleware(RequestId)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class FrugateApp(FastAPI):
    """FastAPI, with the two hot routes served before the framework layers (fastpath.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = ENDPOINTS.get(scope["path"])
            state = getattr(self.state, "frugate", None)
            if endpoint is not None and state is not None:
                await fastpath.handle(state, scope, receive, send, endpoint)
                return
        await super().__call__(scope, receive, send)


def _render(err: FrugateError) -> Response:
    return render_error(err)


async def _frugate_error(request: Request, exc: FrugateError) -> Response:
    return render_error(exc, getattr(request.app.state, "frugate", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    return _render(InvalidRequest(f"Invalid value for '{param}': {first.get('msg', 'invalid')}.",
                                  param=param, code="invalid_value"))


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        return _render(NotFound(f"Unknown path: {request.url.path}", code="unknown_url"))
    err = FrugateError(str(exc.detail))
    err.status_code = exc.status_code
    err.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return JSONBytes(err.json(), status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    rid = request.scope.get("state", {}).get("request_id")
    log.error("unhandled error", exc_info=exc, extra={"fields": {"request_id": rid}})
    return _render(FrugateError(f"The gateway hit an internal error (request {rid})."))


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ChatCompletionRequest, CompletionRequest, EmbeddingRequest):
        s = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(s.pop("$defs", {}))
        components[model.__name__] = s
    _document_errors(schema)
    app.openapi_schema = schema
    return schema


_ERROR_RESPONSE = {"description": "OpenAI-style error", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
_MODEL_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


def _document_errors(schema: dict[str, Any]) -> None:
    """Document what every route really answers: the one error shape on any 4xx (auth,
    validation, limits; never FastAPI's 422, which the handler turns into 400), plus 5xx from
    upstreams on the routes that call a model, whose 200 may also be an SSE stream."""
    schema["components"]["schemas"]["ErrorResponse"] = {
        "type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["message", "type", "param", "code"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                           "param": {"type": ["string", "null"]},
                           "code": {"type": ["string", "null"]}}}}}
    for path, ops in schema["paths"].items():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            responses.setdefault("4XX", _ERROR_RESPONSE)
            if path in _MODEL_ROUTES:
                responses.setdefault("5XX", _ERROR_RESPONSE)
                if path != "/v1/embeddings":
                    ok = responses.setdefault("200", {"description": "Successful Response"})
                    ok.setdefault("content", {}).setdefault("text/event-stream", {
                        "schema": {"type": "string"}})


__all__ = ["create_app", "validation_error"]
