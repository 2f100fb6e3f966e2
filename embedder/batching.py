from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from embedder.base import Embedder, Vectors
from embedder.window import query_window


class BatchingEmbedder:
    """Micro-batches concurrent `embed_one` calls into one forward pass.

    No timer: while one batch runs in the worker thread, new callers queue up and
    form the next batch, so a lone request pays no waiting time.
    """

    def __init__(self, inner: Embedder, max_batch: int = 64) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._running = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")

    def embed(self, texts: Sequence[str]) -> Vectors:
        return self.inner.embed(texts)

    async def embed_many(self, texts: list[str]) -> Vectors:
        """Embed a list off the event loop, on the same thread as the micro-batches."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.inner.embed, texts)

    async def embed_query(self, text: str) -> np.ndarray:
        """The vector of a request's text: `query_window(text)`, the text the router was trained
        on (short texts come back unchanged, so the cache and RAG see the usual vectors)."""
        return await self.embed_one(query_window(text))

    async def embed_one(self, text: str) -> np.ndarray:
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((text, fut))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                texts = [t for t, _ in batch]
                try:
                    vecs = await loop.run_in_executor(self._pool, self.inner.embed, texts)
                except Exception as exc:  # hand the failure to every waiter
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), vec in zip(batch, vecs, strict=True):
                    if not fut.done():
                        fut.set_result(vec)
        finally:
            self._running = False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
