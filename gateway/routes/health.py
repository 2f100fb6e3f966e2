"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from gateway.responses import JSONBytes

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process serves HTTP")
async def healthz() -> JSONBytes:
    return JSONBytes(b'{"status":"ok"}')


@router.get("/readyz", summary="Readiness: state built and at least one replica up per pool",
            responses={503: {"description": "Starting, or a pool has no healthy replica"}})
async def readyz(request: Request) -> JSONBytes:
    state = getattr(request.app.state, "frugate", None)
    if state is None or not state.ready.is_set():
        return JSONBytes(b'{"status":"starting"}', status_code=503)
    down = [p.name for p in state.pools.values() if not p.healthy]
    if down:
        import orjson

        return JSONBytes(orjson.dumps({"status": "degraded", "pools_down": down}),
                         status_code=503)
    return JSONBytes(b'{"status":"ready"}')


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True,
            response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    state = request.app.state.frugate
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
