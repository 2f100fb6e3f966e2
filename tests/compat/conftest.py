"""A gateway in front of two simulated replicas, shared by the client compatibility suites.

The third-party clients (LangChain, LlamaIndex) come from the `compat` extra. They are imported
inside the tests, so the default suite collects without them; a missing one fails its tests
with the install command (never a skip).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.gateway.harness import GatewayServer, pool, settings_for
from workers.sim.process import SimServer


@pytest.fixture(scope="module")
def gateway(embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    small = SimServer(model="sim-small", profile="fast", max_model_len=4096).start()
    large = SimServer(model="sim-large", profile="fast", max_model_len=8192).start()
    data: Path = tmp_path_factory.mktemp("compat")
    settings = settings_for(
        [pool("small", small.url, max_context=4096, aliases=["gpt-4o-mini"]),
         pool("large", large.url, max_context=8192, aliases=["gpt-4o"])], data)
    try:
        with GatewayServer(settings, embedder) as gw:
            yield gw
    finally:
        small.close()
        large.close()


@pytest.fixture(scope="module")
def api_key(gateway: GatewayServer) -> str:
    return gateway.make_key(tenant="compat", team="clients")


def need(module: str) -> ModuleType:
    """Import a client library of the `compat` extra, or fail saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"{module} is missing: pip install -e '.[compat]' ({exc})")
