"""A vLLM simulator: an OpenAI-compatible server that behaves like vLLM for the gateway.

It is the demo upstream, the test upstream and the load-test upstream. It is a simulator,
not vLLM: see docs/simulator.md for what it models and what it does not.

Public surface:
    SimConfig, PROFILES    settings and presets (`SimConfig.from_profile("realistic-small")`)
    SimServer              start a simulator subprocess on a free port (tests, failover)
    SimApp                 the raw ASGI application (in-process use, httpx.ASGITransport)
    serve                  run a SimApp under uvicorn in this process
    Tokenizer, tokenizer_path   the cl100k_base tokenizer the simulator counts with
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from workers.sim.config import PROFILES, Faults, SimConfig
from workers.sim.process import SimServer

if TYPE_CHECKING:
    from workers.sim.app import SimApp
    from workers.sim.server import serve
    from workers.sim.tokenizer import Tokenizer, tokenizer_path

__all__ = [
    "PROFILES",
    "Faults",
    "SimApp",
    "SimConfig",
    "SimServer",
    "Tokenizer",
    "serve",
    "tokenizer_path",
]

# Heavy modules (uvicorn, tiktoken) load on first use so that importing the CLI stays fast.
_LAZY = MappingProxyType(
    {
        "SimApp": "workers.sim.app",
        "serve": "workers.sim.server",
        "Tokenizer": "workers.sim.tokenizer",
        "tokenizer_path": "workers.sim.tokenizer",
    }
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'workers.sim' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
