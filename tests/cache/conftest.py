from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def chat(text: str, **params: Any) -> dict[str, Any]:
    return {"model": "small", "messages": [{"role": "user", "content": text}], **params}


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "small",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def unit(seed: int, dim: int = 384) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, cosine: float, seed: int = 99) -> np.ndarray:
    """A unit vector with the given cosine to unit vector `v`."""
    r = unit(seed, v.size)
    r = r - (r @ v) * v
    r /= np.linalg.norm(r)
    out = cosine * v + np.sqrt(1 - cosine**2) * r
    return (out / np.linalg.norm(out)).astype(np.float32)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()
