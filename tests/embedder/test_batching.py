from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from embedder import BatchingEmbedder


class RecordingEmbedder:
    """A deterministic stand-in model that records the batches it is given."""

    dim = 4

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.fail = fail
        self.threads: set[str] = set()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(texts))
        if self.fail:
            raise RuntimeError("model broke")
        if self.delay:
            threading.Event().wait(self.delay)
        return np.array([[len(t), 0, 0, 1] for t in texts], dtype=np.float32)


async def test_lone_call_is_its_own_batch() -> None:
    inner = RecordingEmbedder()
    batcher = BatchingEmbedder(inner)
    vec = await batcher.embed_one("abc")
    assert vec.tolist() == [3, 0, 0, 1]
    assert inner.batches == [["abc"]]
    assert all(name.startswith("embed") for name in inner.threads)  # off the event loop
    batcher.close()


async def test_concurrent_calls_share_forward_passes() -> None:
    inner = RecordingEmbedder(delay=0.02)
    batcher = BatchingEmbedder(inner, max_batch=16)
    texts = ["x" * (i + 1) for i in range(40)]
    vecs = await asyncio.gather(*(batcher.embed_one(t) for t in texts))
    assert [int(v[0]) for v in vecs] == [len(t) for t in texts]  # each caller gets its own
    assert len(inner.batches) < 10 and max(len(b) for b in inner.batches) <= 16
    batcher.close()


async def test_failure_reaches_every_waiter_and_batcher_recovers() -> None:
    inner = RecordingEmbedder(fail=True)
    batcher = BatchingEmbedder(inner)
    results = await asyncio.gather(
        *(batcher.embed_one(t) for t in ("a", "b")), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    inner.fail = False
    assert (await batcher.embed_one("ok"))[0] == 2
    batcher.close()


def test_sync_embed_passes_through_and_closed_batcher_refuses() -> None:
    batcher = BatchingEmbedder(RecordingEmbedder())
    assert batcher.embed(["ab", "c"]).shape == (2, 4)
    batcher.close()
    with pytest.raises(RuntimeError):
        asyncio.run(batcher.embed_one("x"))
