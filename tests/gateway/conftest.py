from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.harness import GatewayServer, pool, settings_for
from workers.sim.process import SimServer


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, SimServer]]:
    """One fast simulated replica per pool (small, large), shared by a test module."""
    small = SimServer(model="sim-small", profile="fast", max_model_len=4096).start()
    large = SimServer(model="sim-large", profile="fast", max_model_len=8192).start()
    try:
        yield {"small": small, "large": large}
    finally:
        small.close()
        large.close()


@pytest.fixture(scope="module")
def gateway(sims: dict[str, SimServer], embedder: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    data: Path = tmp_path_factory.mktemp("gw")
    settings = settings_for(
        [pool("small", sims["small"].url, max_context=4096, aliases=["gpt-4o-mini"]),
         pool("large", sims["large"].url, max_context=8192, aliases=["gpt-4o"])],
        data)
    with GatewayServer(settings, embedder) as gw:
        yield gw


@pytest.fixture(scope="module")
def api_key(gateway: GatewayServer) -> str:
    return gateway.make_key()
