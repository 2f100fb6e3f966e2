"""Fixtures for worker tests: the real vLLM server (session-scoped, started on first use)."""

from __future__ import annotations

from tests.workers.vllm_server import vllm_server

__all__ = ["vllm_server"]
