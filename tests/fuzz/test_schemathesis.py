"""Schemathesis against the gateway's own OpenAPI document: every route, valid and invalid input.

For each operation of `/openapi.json` (the OpenAI surface, the team routes and the admin API),
Hypothesis generates requests from the schema (positive mode) and requests that violate it
(negative mode), sends them to a live gateway over simulated replicas with the right
credentials (master key for /admin, a team key for /v1), and checks each response:
- no 5xx;
- the status code is one the operation documents, with the documented content type, headers
  and body schema;
- negative mode: requests that violate the schema are rejected with a 4xx. Not applied when
  the only violation is in the query string: Starlette keeps the last of repeated values and
  reads any text as a string, so "a scalar sent as an array" is served instead of refused.
  Such cases still get every other check.

Nothing is excluded. Operations whose successful responses are streams (`stream: true`) are
checked as any other: the content type `text/event-stream` is documented for them.
Deterministic (`derandomize`), so CI sees the same cases every run; `FRUGATE_FUZZ_EXAMPLES`
raises the number of cases per operation for a deeper local run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.parameters import ParameterLocation

from gateway.app import create_app
from tests.gateway.harness import GatewayServer, pool, settings_for
from workers.sim.process import SimServer

pytestmark = pytest.mark.faults

EXAMPLES = int(os.environ.get("FRUGATE_FUZZ_EXAMPLES", "20"))
MASTER = "fk-test-master"


def _pools(small: str, large: str) -> list[dict[str, Any]]:
    return [pool("small", small, max_context=4096, aliases=["gpt-4o-mini"]),
            pool("large", large, max_context=8192, aliases=["gpt-4o"])]


def _operations() -> list[Any]:
    """(operation, mode) for every documented operation (the app is built, not started).

    Negative mode needs something to violate: operations without parameters or a body only
    get positive cases."""
    app = create_app(settings_for(_pools("http://127.0.0.1:9", "http://127.0.0.1:9"),
                                  Path("/nonexistent")))
    out = []
    for path, ops in app.openapi()["paths"].items():
        for method, op in ops.items():
            label = f"{method.upper()} {path}"
            out.append(pytest.param(label, GenerationMode.POSITIVE, id=f"{label} positive"))
            if op.get("parameters") or op.get("requestBody"):
                out.append(pytest.param(label, GenerationMode.NEGATIVE, id=f"{label} negative"))
    return out


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def live(embedder: Any, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[GatewayServer, Any, str]]:
    small = SimServer(model="sim-small", profile="fast", max_model_len=4096).start()
    large = SimServer(model="sim-large", profile="fast", max_model_len=8192).start()
    try:
        settings = settings_for(_pools(small.url, large.url), tmp_path_factory.mktemp("fuzz"),
                                limits={"max_tokens_ceiling": 4096})
        with GatewayServer(settings, embedder) as gw:
            key = gw.make_key()
            schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
            yield gw, schema, key
    finally:
        small.close()
        large.close()


def _auth(path: str, key: str) -> dict[str, str]:
    if path.startswith("/admin"):
        return {"authorization": f"Bearer {MASTER}"}
    if path.startswith("/v1"):
        return {"authorization": f"Bearer {key}"}
    return {}


def _negated(case: Any) -> set[ParameterLocation]:
    """Where a negative case breaks the schema (body, path, query...)."""
    meta = case.meta
    if meta is None:
        return set()
    return {loc for loc, part in meta.components.items() if part.mode.is_negative}


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.mark.parametrize(("label", "mode"), OPERATIONS)
def test_operation(live: tuple[GatewayServer, Any, str], label: str,
                   mode: GenerationMode) -> None:
    gw, schema, key = live
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    headers = _auth(path, key)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        case.headers = {**(case.headers or {}), **headers}
        response = case.call(base_url=gw.url, timeout=30)
        checks = list(CHECKS)
        if mode is GenerationMode.NEGATIVE and _negated(case) - {ParameterLocation.QUERY}:
            checks.append(negative_data_rejection)
        case.validate_response(response, checks=checks)

    run()
