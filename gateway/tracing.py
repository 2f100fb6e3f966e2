"""OpenTelemetry tracing of model calls (optional: the `otel` extra; off by default).

One SERVER span per request, named `chat <model>` / `text_completion <model>`, with a child
span per pipeline stage (`frugate.authenticate`, `frugate.admit`, `frugate.embed`,
`frugate.retrieve`, `frugate.cache`, `frugate.ground`, `frugate.route`, `frugate.dispatch`,
`frugate.relay`, `frugate.settle`). At settlement the request span gets the GenAI semantic
convention attributes (`gen_ai.request.model`, `gen_ai.response.model`,
`gen_ai.usage.input_tokens`, ...) and frugate's own (`frugate.pool`, `frugate.cache`,
`frugate.route`, `frugate.cost_usd`, ...). Prompts, completions and keys are never recorded.

Off, `Tracer.begin` returns one shared object, `OFF`, whose `stage()` returns itself and whose
`__enter__`/`__exit__`/`finish` do nothing: a stage costs two method calls and allocates
nothing (benchmarks/tracing_overhead.py measures it), and opentelemetry is never imported.

The pipeline uses it like this:

    t = call.trace = s.tracer.begin(call)
    with t.stage("admit"):
        ...
    t.finish(job)   # in settlement, on every exit path after admission

A stage that fails before admission ends the request span itself (no settlement follows).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from gateway.config import Tracing
from gateway.errors import FrugateError

if TYPE_CHECKING:
    from gateway.pipeline import Call, Job

OPERATIONS = {"chat": "chat", "completions": "text_completion"}
SYSTEM = "vllm"  # what answers behind the gateway: self-hosted vLLM pools


class NoTrace:
    """A request's trace while tracing is off: every method does nothing."""

    __slots__ = ()

    def stage(self, name: str) -> NoTrace:
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        return None

    def finish(self, job: Job) -> None:
        return None


OFF: Final = NoTrace()  # stateless, so one instance serves every request


class Tracer:
    """Tracing off (the default): every request gets the shared `OFF`."""

    enabled = False

    def begin(self, call: Call) -> Any:
        return OFF

    def close(self) -> None:
        return None


def build_tracer(settings: Tracing, exporter: Any = None) -> Tracer:
    """The tracer the settings ask for. `exporter` (a SpanExporter) replaces OTLP, for tests."""
    if not settings.enabled:
        return Tracer()
    return OtelTracer(settings, exporter)


class OtelTracer(Tracer):
    """Spans through an OpenTelemetry SDK TracerProvider owned by this gateway (not global)."""

    enabled = True

    def __init__(self, settings: Tracing, exporter: Any = None) -> None:
        try:
            from opentelemetry import context, trace
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError as exc:
            raise RuntimeError("tracing.enabled needs the otel extra: "
                               "pip install 'frugate[otel]'") from exc
        from gateway import __version__

        self.api = trace
        self.context = context
        self.propagator = TraceContextTextMapPropagator()
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name,
                                      "service.version": __version__}),
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        if exporter is not None:  # tests: every span exported as it ends
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            self.provider.add_span_processor(BatchSpanProcessor(_otlp(settings)))
        self.tracer = self.provider.get_tracer("frugate", __version__)

    def begin(self, call: Call) -> RequestTrace:
        return RequestTrace(self, call)

    def close(self) -> None:
        self.provider.shutdown()  # flushes what the batch processor still holds


def _otlp(settings: Tracing) -> Any:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    endpoint = settings.endpoint
    if endpoint and settings.protocol == "http/protobuf" and not endpoint.endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    # endpoint None: the exporter's default, or OTEL_EXPORTER_OTLP_* from the environment.
    return OTLPSpanExporter(endpoint=endpoint, headers=dict(settings.headers) or None, timeout=5)


class RequestTrace:
    """The spans of one request: the request span and a stack of open stage spans."""

    def __init__(self, owner: OtelTracer, call: Call) -> None:
        self.owner = owner
        api = owner.api
        # Start when the request arrived (before its body was read), not now.
        started = time.time_ns() - int((time.perf_counter() - call.started) * 1e9)
        parent = None
        traceparent = call.headers.get("traceparent")
        if traceparent:  # the client's own trace, when it sends one
            parent = owner.propagator.extract({"traceparent": traceparent})
        op = OPERATIONS.get(call.endpoint, call.endpoint)
        self.span = owner.tracer.start_span(
            op, context=parent, kind=api.SpanKind.SERVER, start_time=started,
            attributes={"gen_ai.operation.name": op, "gen_ai.system": SYSTEM,
                        "gen_ai.provider.name": SYSTEM, "frugate.request_id": call.request_id})
        self.open: list[Any] = [self.span]
        self.tokens: list[Any] = []
        self.admitted = False
        self.ended = False
        self.dispatched_ns: int | None = None  # the upstream answered: relaying starts
        self.settling_ns: int | None = None  # relaying is over

    def stage(self, name: str) -> Stage:
        return Stage(self, name)

    def finish(self, job: Job) -> None:
        """Settlement: the relay span (dispatch done to settlement), attributes, the end."""
        if self.ended:
            return
        if self.dispatched_ns is not None:
            relay = self.owner.tracer.start_span(
                "frugate.relay", context=self.owner.api.set_span_in_context(self.span),
                start_time=self.dispatched_ns)
            relay.end(end_time=self.settling_ns)
        rec = job.record
        op = OPERATIONS.get(rec.endpoint, rec.endpoint)
        self.span.update_name(f"{op} {rec.requested_model}")
        attrs = _request_attributes(job) | {
            "gen_ai.response.model": rec.served_model,
            "gen_ai.usage.input_tokens": rec.prompt_tokens,
            "gen_ai.usage.output_tokens": rec.completion_tokens,
            "gen_ai.usage.cache_read.input_tokens": rec.cached_tokens or None,
            "gen_ai.response.time_to_first_chunk":
                None if rec.ttft_ms is None else rec.ttft_ms / 1000,
            "frugate.tenant_id": rec.tenant_id, "frugate.team_id": rec.team_id,
            "frugate.key_id": rec.key_id, "frugate.pool": rec.pool,
            "frugate.cache": rec.cache_status, "frugate.route": rec.route_decision,
            "frugate.route_score": rec.route_score, "frugate.rag": rec.rag_used,
            "frugate.status": rec.status, "frugate.cost_usd": rec.cost_micros / 1e6,
            "frugate.baseline_usd": rec.baseline_micros / 1e6,
            "frugate.overhead_ms": job.overhead_ms,
        }
        self.span.set_attributes({k: v for k, v in attrs.items() if v is not None})
        if rec.status != "ok":
            error = rec.error_type or rec.status
            self.span.set_attribute("error.type", error)
            self.span.set_status(self.owner.api.Status(self.owner.api.StatusCode.ERROR, error))
        self._end()

    def _fail(self, exc: BaseException) -> None:
        """A request refused before admission (bad key, bad body, over budget)."""
        error = exc.type if isinstance(exc, FrugateError) else type(exc).__name__
        self.span.set_attribute("error.type", error)
        self.span.set_status(self.owner.api.Status(self.owner.api.StatusCode.ERROR, error))
        self._end()

    def _end(self) -> None:
        self.ended = True
        self.span.end()


class Stage:
    """One stage's span, a child of the innermost open span of its request."""

    __slots__ = ("name", "span", "token", "trace")

    def __init__(self, trace: RequestTrace, name: str) -> None:
        self.trace = trace
        self.name = name
        self.span: Any = None
        self.token: Any = None

    def __enter__(self) -> None:
        t = self.trace
        api = t.owner.api
        if self.name == "settle":
            t.settling_ns = time.time_ns()
        self.span = t.owner.tracer.start_span(
            f"frugate.{self.name}", context=api.set_span_in_context(t.open[-1]),
            kind=api.SpanKind.CLIENT if self.name == "dispatch" else api.SpanKind.INTERNAL)
        t.open.append(self.span)
        # Current for the stage, so spans of instrumented libraries (httpx, ...) nest under it.
        self.token = t.owner.context.attach(api.set_span_in_context(self.span))

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        t = self.trace
        t.owner.context.detach(self.token)
        t.open.pop()
        api = t.owner.api
        if exc is not None:
            self.span.record_exception(exc)
            error = exc.type if isinstance(exc, FrugateError) else type(exc).__name__
            self.span.set_attribute("error.type", error)
            self.span.set_status(api.Status(api.StatusCode.ERROR, error))
        self.span.end()
        if self.name in ("dispatch", "cascade") and exc is None:  # the relay starts after
            t.dispatched_ns = time.time_ns()
        if self.name == "admit" and exc is None:
            t.admitted = True
        elif exc is not None and not t.admitted and not t.ended:
            t._fail(exc)


def _request_attributes(job: Job) -> dict[str, Any]:
    req = job.req
    n = getattr(req, "n", 1) or 1
    return {
        "gen_ai.request.model": job.record.requested_model,
        "gen_ai.request.max_tokens": _output_limit(req),
        "gen_ai.request.temperature": getattr(req, "temperature", None),
        "gen_ai.request.top_p": getattr(req, "top_p", None),
        "gen_ai.request.seed": getattr(req, "seed", None),
        "gen_ai.request.stream": bool(getattr(req, "stream", False)),
        "gen_ai.request.choice.count": n if n != 1 else None,
    }


def _output_limit(req: Any) -> int | None:
    limit = getattr(req, "output_limit", None)
    return limit() if callable(limit) else None


__all__ = ["OFF", "NoTrace", "OtelTracer", "RequestTrace", "Tracer", "build_tracer"]
