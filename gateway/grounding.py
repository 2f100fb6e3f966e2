"""Pipeline stages 4 (retrieve) and 6 (ground): RAG over the caller's tenant collections.

A request asks for grounding with `extra_body={"frugate": {"rag": {"collection", "top_k"}}}`,
or gets it by default from its key's or team's settings (`{"rag": {"collection": ...}}`).
Collections are looked up with the caller's tenant and team, so another tenant's collection
is indistinguishable from a missing one.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from gateway.config import Rag as RagSettings
from gateway.errors import NotFound
from gateway.tokens import count_text
from rag import CollectionNotFound, CollectionStore, build_grounding, insert_grounding

if TYPE_CHECKING:
    from gateway.pipeline import Job

# Per-source header and instruction overhead on top of the chunks' own tokens.
_OVERHEAD_TOKENS = 120


class Grounding:
    def __init__(self, store: CollectionStore, settings: RagSettings) -> None:
        self.store = store
        self.settings = settings
        # Searches take a few ms of CPU (faiss + sparse BM25): off the event loop.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rag")

    def request(self, job: Job) -> tuple[str, int] | None:
        """(collection, top_k) this request is grounded on, if any."""
        ctl = job.controls.rag
        if ctl is not None:
            return ctl.collection, ctl.top_k
        default = job.principal.settings.get("rag")
        if isinstance(default, dict) and default.get("collection"):
            return str(default["collection"]), int(default.get("top_k") or self.settings.top_k)
        return None

    def wanted(self, job: Job) -> bool:
        return job.call.endpoint == "chat" and self.request(job) is not None

    def token_allowance(self, job: Job) -> int:
        """Prompt tokens grounding may add (for the budget hold)."""
        return self.settings.max_grounding_tokens + _OVERHEAD_TOKENS if self.wanted(job) else 0

    async def retrieve(self, job: Job, vector: Any) -> None:
        ref, top_k = self.request(job)  # type: ignore[misc]
        p = job.principal
        try:
            collection = self.store.get(p.tenant_id, ref, team=p.team_id)
        except CollectionNotFound:
            raise NotFound(f"No collection '{ref}' for this key.", param="frugate.rag.collection",
                           code="collection_not_found") from None
        loop = asyncio.get_running_loop()
        job.chunks = await loop.run_in_executor(
            self._pool, lambda: collection.search(job.query_text, vector, k=top_k))
        job.record.rag_used = True

    def ground(self, job: Job) -> None:
        """Insert the grounding message before the last user turn; remember the citations."""
        message, citations = build_grounding(job.chunks or [],
                                             max_tokens=self.settings.max_grounding_tokens)
        job.body["messages"] = insert_grounding(job.body["messages"], message,
                                                position=self.settings.position)
        job.citations = [dict(c) for c in citations]
        job.prompt_tokens += count_text(message["content"]) + 4

    def chunk_ids(self, job: Job) -> list[str]:
        return [h.chunk_id for h in job.chunks or []]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()
