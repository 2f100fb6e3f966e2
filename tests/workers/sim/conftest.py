"""Fixtures for the simulator tests: engines on a virtual clock, simulator subprocesses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from workers.sim import SimConfig, SimServer
from workers.sim.engine import Engine, Job
from workers.sim.plans import Planner
from workers.sim.protocol import ParseContext, parse_chat
from workers.sim.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def sim_planner() -> Planner:
    return Planner(Tokenizer(), (16, 128))


class EngineHarness:
    """An engine driven on a virtual clock, with a helper to submit chat requests."""

    def __init__(self, planner: Planner, **overrides: Any) -> None:
        self.config = SimConfig.from_profile("fast", seed=7, **overrides)
        self.engine = Engine(self.config, planner)
        self.ctx = ParseContext(
            [self.config.model], self.config.max_model_len, planner.tokenizer, "lorem"
        )

    def submit(
        self, content: str = "hello", max_tokens: int = 32, at: float = 0.0, **body: Any
    ) -> Job:
        request = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            **body,
        }
        job = self.engine.make_job(parse_chat(request, self.ctx, None), None, at)
        self.engine.submit(job)
        return job


@pytest.fixture
def harness(sim_planner: Planner) -> Callable[..., EngineHarness]:
    def build(**overrides: Any) -> EngineHarness:
        return EngineHarness(sim_planner, **overrides)

    return build


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    """A fast, seeded simulator shared by the session (tests reset the faults they set)."""
    with SimServer(model="sim-model", profile="fast", seed=11) as server:
        yield server


@pytest.fixture(scope="session")
def timed() -> Iterator[SimServer]:
    """A simulator with real step times: 10 ms prefill, 20 ms per decode step, 4 seqs."""
    with SimServer(profile="fast", ttft_ms=10, itl_ms=20, max_num_seqs=4, seed=5) as server:
        yield server


@pytest.fixture(scope="session")
def spec_sim() -> Iterator[SimServer]:
    """A fast simulator that speculates (k=4 drafts, 0.6 acceptance) and reports cached tokens."""
    with SimServer(
        profile="fast", spec_k=4, spec_alpha=0.6, seed=3, prompt_tokens_details=True
    ) as server:
        yield server
