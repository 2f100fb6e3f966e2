"""Shared fixtures: one embedder per test session, simulated vLLM replicas, gateways."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.workers.vllm_server import vllm_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


__all__ = ["embedder", "vllm_server"]


@pytest.fixture(scope="session")
def embedder() -> Iterator[object]:
    """The bundled MiniLM, loaded once for the whole run (loading takes seconds)."""
    from embedder import MiniLMEmbedder

    yield MiniLMEmbedder()
