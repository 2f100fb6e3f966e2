"""A team's own view: `GET /v1/usage` (its usage report) and `POST /v1/feedback`.

Both authenticate with the team's virtual key and only ever touch that key's team: the report
is forced to the caller's team, and feedback is accepted only for the team's own requests.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from gateway.accounting.reports import (
    ReportQuery,
    Source,
    default_range,
    parse_group_by,
    parse_time,
    request_team,
    to_csv,
    usage_report,
)
from gateway.errors import NotFound
from gateway.protocol.admin import FeedbackIn, FeedbackOut, UsageReport, UsageRow
from gateway.routes.common import StateDep
from gateway.state import State
from gateway.storage.models import Feedback
from gateway.tenancy import Principal, authenticate

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["usage"])
bearer_scheme = HTTPBearer(auto_error=False, description="A virtual key (fk-...).")
Format = Literal["json", "csv"]


async def current_principal(
    request: Request, state: StateDep,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    return authenticate(state.directory, request.headers.get("authorization"))


PrincipalDep = Annotated[Principal, Depends(current_principal)]
FromQ = Annotated[str | None, Query(alias="from", description="ISO date/datetime, UTC "
                                    "(default: the first of this month).")]
ToQ = Annotated[str | None, Query(description="Exclusive ISO date/datetime (default: tomorrow).")]
GroupQ = Annotated[str | None, Query(description="Comma-separated subset of tenant, team, key, "
                                     "model, day (default: team,model).")]


def report_query(from_: str | None, to: str | None, group_by: str | None, *,
                 source: Source = "auto", **filters: str | None) -> ReportQuery:
    start, end = default_range(datetime.now(UTC))
    return ReportQuery(parse_time(from_, start, "from"), parse_time(to, end, "to"),
                       parse_group_by(group_by), source=source, **filters)


async def render_report(state: State, q: ReportQuery, fmt: Format) -> Response | UsageReport:
    await catch_up(state)
    async with state.sessions() as s:
        report = await usage_report(s, q)
    if fmt == "csv":
        return Response(to_csv(report), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="usage.csv"'})
    return UsageReport.model_validate({
        "from": q.start, "to": q.end, "group_by": list(q.group_by), "source": report.source,
        "rows": [UsageRow.model_validate(r) for r in report.rows],
        "totals": UsageRow.model_validate(report.totals)})


@router.get("/usage", response_model=UsageReport,
            summary="This key's team: requests, tokens, cost and savings",
            responses={200: {"content": {"text/csv": {}}}})
async def team_usage(state: StateDep, principal: PrincipalDep, from_: FromQ = None,
                     to: ToQ = None, group_by: GroupQ = None, model: str | None = None,
                     key: str | None = None, format: Format = "json") -> Response | UsageReport:
    """The same report as `GET /admin/reports/usage`, always restricted to the caller's team."""
    q = report_query(from_, to, group_by, team_id=principal.team_id, model=model, key_id=key)
    return await render_report(state, q, format)


@router.post("/feedback", response_model=FeedbackOut, status_code=201,
             summary="Rate the answer to one of this team's requests")
async def feedback(body: FeedbackIn, state: StateDep, principal: PrincipalDep) -> FeedbackOut:
    """Stores a quality score (0 bad .. 1 good) for a request id from `x-frugate-request-id`,
    for router retraining. Only requests of the caller's own team are accepted."""
    team = await _team_of(state, body.request_id)
    if team != principal.team_id:
        # The same answer for "no such request" and "another team's request".
        raise NotFound(f"No request '{body.request_id}' for this team (requests appear in the "
                       "ledger within a second of finishing).", param="request_id",
                       code="request_not_found")
    row = Feedback(request_id=body.request_id, key_id=principal.key_id, team_id=team,
                   score=body.score, comment=body.comment, created_at=datetime.now(UTC))
    async with state.sessions() as s, s.begin():
        s.add(row)
    return FeedbackOut.model_validate(row)


async def catch_up(state: State) -> None:
    """Read-your-writes for reports: write this replica's buffered ledger rows (and, with Redis,
    what the stream holds) before querying. Best effort: a database outage still answers.
    Shielded: a timeout stops the wait, never a write mid-transaction."""
    try:
        if state.ledger.buffer:
            await asyncio.wait_for(asyncio.shield(state.ledger.flush()), timeout=2)
        if state.ledger_consumer is not None:
            await asyncio.wait_for(asyncio.shield(state.ledger_consumer.drain()), timeout=2)
    except Exception as exc:  # the report still answers from what is written
        log.warning("report catch-up skipped: %s", exc)


async def _team_of(state: State, request_id: str) -> str | None:
    for attempt in range(2):
        async with state.sessions() as s:
            team = await request_team(s, request_id)
        if team is not None:
            return team
        # Not flushed yet: the writer's in-memory batch, then one short wait (Redis stream).
        pending = [r.team_id for r in state.ledger.buffer if r.request_id == request_id]
        if pending:
            return pending[0]
        if attempt == 0:
            await asyncio.sleep(0.5)
    return None
