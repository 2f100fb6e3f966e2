from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.gateway.harness import GatewayServer, pool, settings_for
from workers.sim.process import SimServer

MASTER = "fk-test-master"
UPSTREAM_KEY = "sk-upstream-f00dfacecafe0123456789"
WEBHOOK_SECRET = "whsec-0123456789abcdef-security"


@pytest.fixture(scope="package")
def sim() -> Iterator[SimServer]:
    with SimServer(model="sim-small", profile="fast", max_model_len=4096) as s:
        yield s


@pytest.fixture(scope="package")
def gw(sim: SimServer, embedder: Any, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayServer]:
    """A gateway with every kind of secret configured: master key, upstream key, webhook."""
    settings = settings_for([pool("small", sim.url, max_context=4096, api_key=UPSTREAM_KEY)],
                            tmp_path_factory.mktemp("sec"), webhook_secret=WEBHOOK_SECRET)
    with GatewayServer(settings, embedder) as server:
        yield server
