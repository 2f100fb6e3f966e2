"""Shared fixtures: one embedder per test session, simulated vLLM replicas, gateways."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedder() -> Iterator[object]:
    """The bundled MiniLM, loaded once for the whole run (loading takes seconds)."""
    from embedder import MiniLMEmbedder

    yield MiniLMEmbedder()
