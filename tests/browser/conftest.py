"""A gateway with seeded ledger data and a headless Chromium (the Debian package, never a
downloaded browser) driven by Playwright's Python driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import World, seed
from tests.gateway.admin_support import admin_client
from tests.gateway.harness import GatewayServer, pool, settings_for
from workers.sim.process import SimServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def world(embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # The large pool speculates, so the pools table has an acceptance rate to show.
    small = SimServer(model="sim-small", profile="fast", max_model_len=4096).start()
    large = SimServer(model="sim-large", profile="fast", max_model_len=8192, spec_k=4,
                      spec_alpha=0.7).start()
    data: Path = tmp_path_factory.mktemp("dashboard")
    settings = settings_for(
        [pool("small", small.url, max_context=4096, aliases=["gpt-4o-mini"],
              price={"input": 0.5, "output": 1.5}),
         pool("large", {"url": large.url, "speculative": True}, max_context=8192,
              aliases=["gpt-4o"], price={"input": 5.0, "output": 15.0})],
        data)
    try:
        with GatewayServer(settings, embedder) as gw, admin_client(gw) as admin:
            yield seed(gw, admin)
    finally:
        small.close()
        large.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium from /usr/bin; a launch failure fails the test with the reason (never a skip)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"the browser tests need Playwright's Python driver (pip install "
                    f"'frugate[dev]'): {exc}")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:
            pytest.fail(f"cannot launch {CHROMIUM} (apt-get install chromium chromium-driver; "
                        f".ci/install-system.sh does it): {exc}")
        try:
            yield b
        finally:
            b.close()

