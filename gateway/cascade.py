"""Pipeline stage 8b for routing policies with `cascade_min_logprob`: check small's answer.

A chat request that the router sends to the small pool is answered by small, not streamed,
with token logprobs. If the answer's mean token logprob is below the policy's
`cascade_min_logprob`, the large pool answers instead (streamed if the client asked) and the
request pays both calls (the ledger row's `cascade_micros` holds small's share of
`cost_micros`). An accepted answer goes to a streaming client as a replayed SSE stream, so its
first byte waits for small's whole answer. Logprobs the client did not ask for are removed.
If the large call fails, small's answer stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import FrugateError
from gateway.upstream import Opened, Pool, open_request
from gateway.usage import usage_counts

if TYPE_CHECKING:
    from gateway.pipeline import Job
    from gateway.state import State


@dataclass(slots=True)
class Check:
    """A request's pending cascade check (set by the route stage)."""

    min_logprob: float
    large: Pool
    forced: bool = False  # the gateway, not the client, asked for logprobs
    stream_options: Any = None  # the streaming client's, kept for large's call

    def prepare(self, body: dict[str, Any]) -> None:
        """Small's request: logprobs on, not streamed (the answer is checked whole)."""
        if not body.get("logprobs"):
            body["logprobs"] = self.forced = True
        if body.get("stream"):
            body["stream"] = False
            self.stream_options = body.pop("stream_options", None)


def may_cascade(job: Job) -> bool:
    """Could this request's policy cascade? (Admission then holds for both calls.)"""
    policy = job.target.policy
    return (policy is not None and policy.cascade_min_logprob is not None
            and job.call.endpoint == "chat")


def mean_logprob(payload: Any) -> float | None:
    """Mean logprob of every generated token of every choice; None if there are none."""
    total, n = 0.0, 0
    for choice in (payload.get("choices") if isinstance(payload, dict) else None) or ():
        logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
        for token in (logprobs.get("content") if isinstance(logprobs, dict) else None) or ():
            value = token.get("logprob") if isinstance(token, dict) else None
            if isinstance(value, int | float) and math.isfinite(value):
                total += value
                n += 1
    return total / n if n else None


async def review(state: State, job: Job, opened: Opened) -> Opened:
    """Keep small's answer, or replace it with large's; records the verdict."""
    check, policy, rec = job.cascade, job.target.policy, job.record
    assert check is not None and policy is not None
    try:
        payload = orjson.loads(opened.body)
    except orjson.JSONDecodeError:
        payload = None
    mean = mean_logprob(payload)
    if mean is not None and mean < check.min_logprob and isinstance(payload, dict):
        prompt, completion, cached = usage_counts(payload.get("usage") or {})
        body = dict(job.body, model=check.large.model)
        if check.forced:
            body.pop("logprobs", None)
        if job.req.stream:
            body["stream"], body["stream_options"] = True, check.stream_options
        try:
            larger = await open_request(
                check.large, "/v1/chat/completions", orjson.dumps(body), tap=job.call.tap,
                stream=job.req.stream, settings=state.settings.upstream,
                request_id=job.call.request_id)
        except FrugateError:
            verdict = "cascade_large_failed"  # small's answer is better than none
        else:
            rec.cascade_micros = state.meter.price(opened.pool.name).cost(prompt, completion,
                                                                          cached)
            rec.cascade_tokens = prompt + completion
            job.pool = check.large
            _record(state, job, policy.name, "large", "cascade_escalated")
            return larger
    else:
        verdict = "cascade_unchecked" if mean is None else "cascade_accepted"
    _record(state, job, policy.name, "small", verdict)
    if check.forced and isinstance(payload, dict):
        for choice in payload.get("choices") or ():
            if isinstance(choice, dict):
                choice["logprobs"] = None
        opened.body = orjson.dumps(payload)
    return opened


def _record(state: State, job: Job, policy: str, tier: str, verdict: str) -> None:
    job.record.route_decision = f"{policy}:{tier}:{verdict}"
    assert job.pool is not None
    state.metrics.routes.labels(policy, job.pool.name, verdict).inc()
