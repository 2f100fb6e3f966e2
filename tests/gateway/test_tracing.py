"""OpenTelemetry tracing: off costs nothing and imports nothing; on, one request span with a
child per stage and the GenAI attributes, exported in memory and over real OTLP/HTTP."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.config import Tracing
from gateway.pipeline import Call
from gateway.tracing import OFF, OtelTracer, Tracer, build_tracer
from tests.gateway.harness import GatewayServer, pool, settings_for

MSG = [{"role": "user", "content": "a secret prompt about gateways"}]
STAGES = ["frugate.authenticate", "frugate.queue", "frugate.admit", "frugate.cache",
          "frugate.route", "frugate.dispatch", "frugate.relay", "frugate.settle"]
OPTIONAL = ("frugate.retrieve", "frugate.ground", "frugate.embed")


@pytest.fixture
def spans(gateway: GatewayServer) -> Iterator[InMemorySpanExporter]:
    """Tracing switched on for one test, exported in memory."""
    exporter = InMemorySpanExporter()
    before = gateway.state.tracer
    gateway.state.tracer = build_tracer(Tracing(enabled=True), exporter=exporter)
    try:
        yield exporter
    finally:
        gateway.state.tracer.close()
        gateway.state.tracer = before


def _tree(exporter: InMemorySpanExporter, request_id: str) -> tuple[Any, list[Any]]:
    """The request span with this frugate request id, and its children in start order."""
    deadline = time.monotonic() + 5
    while True:
        done = exporter.get_finished_spans()
        roots = [s for s in done if s.attributes.get("frugate.request_id") == request_id]
        if roots or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(roots) == 1, [s.name for s in done]
    root = roots[0]
    children = sorted((s for s in done if s.parent is not None
                       and s.parent.span_id == root.context.span_id), key=lambda s: s.start_time)
    return root, children


def test_off_by_default_and_free() -> None:
    tracer = build_tracer(Tracing())
    assert type(tracer) is Tracer and not tracer.enabled
    call = Call("req_x", "chat", b"{}", {}, time.perf_counter())
    t = tracer.begin(call)
    assert t is OFF and t.stage("admit") is OFF
    with t.stage("admit"):
        pass
    # Tracing off imports nothing of OpenTelemetry (FastAPI may import its API on its own).
    code = ("import sys, time; from gateway.app import create_app; "
            "otel = lambda: {m for m in sys.modules if m.startswith('opentelemetry')}; "
            "before = otel(); from gateway.tracing import build_tracer; "
            "from gateway.config import Tracing; from gateway.pipeline import Call; "
            "t = build_tracer(Tracing()).begin(Call('r', 'chat', b'', {}, time.perf_counter())); "
            "t.stage('admit').__enter__(); t.finish(None); "
            "print(sorted(otel() - before), 'opentelemetry.sdk.trace' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[] False"


def test_request_span_with_stage_children(gateway: GatewayServer, api_key: str,
                                          spans: InMemorySpanExporter) -> None:
    with openai.OpenAI(base_url=gateway.base_url, api_key=api_key, max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MSG, max_tokens=12, temperature=0.5)  # type: ignore[arg-type]
    usage = raw.parse().usage
    root, children = _tree(spans, raw.headers["x-frugate-request-id"])
    assert root.name == "chat gpt-4o-mini" and root.kind is SpanKind.SERVER
    a = root.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.system"] == "vllm"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == "sim-small"
    assert a["gen_ai.request.max_tokens"] == 12 and a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.request.stream"] is False
    assert a["gen_ai.usage.input_tokens"] == usage.prompt_tokens  # type: ignore[union-attr]
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens  # type: ignore[union-attr]
    assert a["frugate.pool"] == "small" and a["frugate.status"] == "ok"
    assert a["frugate.cache"] == raw.headers["x-frugate-cache"]
    assert a["frugate.cost_usd"] == pytest.approx(float(raw.headers["x-frugate-cost-usd"]),
                                                  abs=1e-6)
    assert root.status.status_code is StatusCode.UNSET
    # retrieve and ground run only for RAG requests; embed nests under the stage that needs it.
    assert [s.name for s in children if s.name not in OPTIONAL] == STAGES
    assert {s.context.trace_id for s in children} == {root.context.trace_id}
    assert all(root.start_time <= s.start_time <= s.end_time <= root.end_time for s in children)
    assert next(s for s in children if s.name == "frugate.dispatch").kind is SpanKind.CLIENT
    # Prompts, completions and keys are never recorded.
    text = json.dumps([dict(s.attributes or {}) for s in spans.get_finished_spans()])
    assert "secret prompt" not in text and api_key not in text
    assert (raw.parse().choices[0].message.content or "")[:20] not in text


def test_stream_span_ends_with_the_stream(gateway: GatewayServer, api_key: str,
                                          spans: InMemorySpanExporter) -> None:
    with openai.OpenAI(base_url=gateway.base_url, api_key=api_key, max_retries=0) as c, \
            c.chat.completions.with_streaming_response.create(
                model="large", messages=MSG, max_tokens=20, stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True}) as resp:
        request_id = resp.headers["x-frugate-request-id"]
        chunks = list(resp.parse())
    usage = chunks[-1].usage
    root, children = _tree(spans, request_id)
    a = root.attributes
    assert a["gen_ai.request.stream"] is True and a["frugate.pool"] == "large"
    assert a["gen_ai.usage.output_tokens"] == usage.completion_tokens  # type: ignore[union-attr]
    assert 0 < a["gen_ai.response.time_to_first_chunk"] < 10
    relay = next(s for s in children if s.name == "frugate.relay")
    dispatch = next(s for s in children if s.name == "frugate.dispatch")
    settle = next(s for s in children if s.name == "frugate.settle")
    assert dispatch.end_time <= relay.start_time <= relay.end_time <= settle.start_time
    assert settle.end_time <= root.end_time


@pytest.mark.parametrize("key,model,error", [
    ("fk-wrong", "small", "authentication_error"),
    (None, "no-such-model", "invalid_request_error"),
])
def test_refused_requests_end_their_span(gateway: GatewayServer, api_key: str,
                                         spans: InMemorySpanExporter, key: str | None,
                                         model: str, error: str) -> None:
    with httpx.Client(base_url=gateway.base_url) as c:
        r = c.post("/chat/completions", headers={"authorization": f"Bearer {key or api_key}"},
                   json={"model": model, "messages": MSG})
    assert r.status_code in (401, 404)
    root, children = _tree(spans, r.headers["x-frugate-request-id"])
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["error.type"] == r.json()["error"]["type"] == error
    assert children[-1].status.status_code is StatusCode.ERROR
    assert "frugate.dispatch" not in [s.name for s in children]


def test_client_traceparent_is_the_parent() -> None:
    exporter = InMemorySpanExporter()
    tracer = build_tracer(Tracing(enabled=True), exporter=exporter)
    assert isinstance(tracer, OtelTracer)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    t = tracer.begin(Call("req_1", "chat", b"", {"traceparent": parent}, time.perf_counter()))
    with t.stage("authenticate"):
        pass
    t._fail(RuntimeError("stop here"))
    tracer.close()
    done = exporter.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in done} == {
        "0af7651916cd43dd8448eb211c80319c"}
    root = next(s for s in done if s.name == "chat")
    assert format(root.parent.span_id, "016x") == "b7ad6b7169203331"


def test_sampling_ratio_zero_exports_nothing() -> None:
    exporter = InMemorySpanExporter()
    tracer = build_tracer(Tracing(enabled=True, sample_ratio=0.0), exporter=exporter)
    t = tracer.begin(Call("req_2", "chat", b"", {}, time.perf_counter()))
    with t.stage("authenticate"):
        pass
    t._fail(RuntimeError("refused"))
    tracer.close()
    assert exporter.get_finished_spans() == ()


class _Collector:
    """An OTLP/HTTP receiver: keeps the bodies POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/traces":
                    outer.bodies.append(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_otlp_export_from_config(sims: dict[str, Any], embedder: Any,
                                 tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    collector = _Collector()
    settings = settings_for([pool("small", sims["small"].url, max_context=4096)], tmp_path,
                            tracing={"enabled": True, "endpoint": collector.url,
                                     "service_name": "frugate-test"})
    try:
        with GatewayServer(settings, embedder) as gw:
            key = gw.make_key()
            with openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0) as c:
                raw = c.chat.completions.with_raw_response.create(
                    model="small", messages=MSG, max_tokens=5)  # type: ignore[arg-type]
            request_id = raw.headers["x-frugate-request-id"]
        # Stopping the gateway flushed the batch to the collector.
        names, service = [], None
        for body in collector.bodies:
            req = ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                service = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    names += [(s.name, {a.key: a.value for a in s.attributes})
                              for s in ss.spans]
        root = [attrs for name, attrs in names if name == "chat small"]
        assert len(root) == 1
        assert root[0]["frugate.request_id"].string_value == request_id
        assert root[0]["gen_ai.usage.output_tokens"].int_value > 0
        assert service is not None and service["service.name"] == "frugate-test"
        assert {n for n, _ in names} >= set(STAGES)
    finally:
        collector.server.shutdown()
        collector.server.server_close()


def test_nested_stage_is_a_child_of_the_open_one() -> None:
    exporter = InMemorySpanExporter()
    tracer = build_tracer(Tracing(enabled=True), exporter=exporter)
    t = tracer.begin(Call("req_3", "chat", b"", {}, time.perf_counter()))
    with t.stage("admit"):
        pass
    with t.stage("cache"), t.stage("embed"):  # the embedding computed for the cache lookup
        pass
    with pytest.raises(RuntimeError), t.stage("route"):
        raise RuntimeError("after admission: settlement ends the request, not the stage")
    assert not t.ended
    t._fail(RuntimeError("end"))
    tracer.close()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["frugate.embed"].parent.span_id == spans["frugate.cache"].context.span_id
    assert spans["frugate.cache"].parent.span_id == spans["chat"].context.span_id
    assert spans["frugate.route"].status.status_code is StatusCode.ERROR
