"""`CollectionStore`: every collection under one data folder, looked up per tenant and team.

Access rule, applied to every lookup: a collection is visible to a caller of the same tenant
whose team is None (tenant-wide: admin or tenant key) or equal to the collection's team;
tenant-wide collections (team None) are visible to every team of the tenant. A collection of
another tenant or team is indistinguishable from a missing one (`CollectionNotFound`, same
message).
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import tiktoken

from embedder.base import Embedder
from rag.chunking import load_encoding
from rag.collections import Collection, Meta
from rag.errors import CollectionExists, CollectionNotFound
from rag.records import CollectionInfo
from rag.retrieval import RetrievalConfig


class CollectionStore:
    """All collections under `root`. One instance per process (it owns open files and locks)."""

    def __init__(
        self,
        root: Path,
        embedder: Embedder,
        *,
        encoding: tiktoken.Encoding | None = None,
        bpe_path: Path | None = None,
        chunk_tokens: int = 256,
        overlap_tokens: int = 48,
        config: RetrievalConfig | None = None,
        faiss_threads: int | None = 1,
    ) -> None:
        """`faiss_threads` is process-wide (faiss has no per-call setting): each search is one
        query, and OpenMP's spinning worker threads cost 20+ ms per search when the cores are
        busy, so the default is 1. None leaves faiss as it is."""
        if faiss_threads is not None:
            import faiss

            faiss.omp_set_num_threads(faiss_threads)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        self.encoding = encoding or load_encoding(bpe_path)
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.config = config or RetrievalConfig()
        self._lock = threading.Lock()
        self._metas: dict[str, Meta] = {}
        self._names: dict[tuple[str, str], str] = {}  # (tenant, name) -> id
        self._open: dict[str, Collection] = {}
        for path in sorted(self.root.glob("*/collection.json")):
            meta = Meta(**json.loads(path.read_text(encoding="utf-8")))
            self._remember(meta)

    def create(
        self,
        tenant: str,
        name: str | None = None,
        *,
        team: str | None = None,
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Collection:
        """A new empty collection owned by `tenant` (and `team`, if given).

        Names are optional and unique per tenant; ids look like `vs_...`.
        """
        if not tenant:
            raise ValueError("tenant is required")
        with self._lock:
            if name is not None and self._by_name(tenant, name) is not None:
                raise CollectionExists(name)
            meta = Meta(
                id=f"vs_{secrets.token_hex(12)}", name=name, tenant=tenant, team=team,
                description=description, metadata=dict(metadata or {}), created_at=time.time(),
                chunk_tokens=self.chunk_tokens, overlap_tokens=self.overlap_tokens,
            )
            directory = self.root / meta.id
            directory.mkdir()
            tmp = directory / "collection.json.tmp"
            tmp.write_text(json.dumps(meta.__dict__), encoding="utf-8")
            tmp.rename(directory / "collection.json")
            self._remember(meta)
            return self._load(meta)

    def get(self, tenant: str, ref: str, *, team: str | None = None) -> Collection:
        """The collection with id or name `ref`, if the caller may see it."""
        with self._lock:
            meta = self._metas.get(ref)
            if meta is None or meta.tenant != tenant:
                meta = self._by_name(tenant, ref)
            if meta is None or not meta.visible_to(tenant, team):
                raise CollectionNotFound(ref)
            return self._load(meta)

    def list(self, tenant: str, *, team: str | None = None) -> list[CollectionInfo]:
        with self._lock:
            metas = [m for m in self._metas.values() if m.visible_to(tenant, team)]
            collections = [self._load(m) for m in sorted(metas, key=lambda m: m.created_at)]
        return [c.info() for c in collections]

    def delete(self, tenant: str, ref: str, *, team: str | None = None) -> None:
        collection = self.get(tenant, ref, team=team)
        with self._lock:
            meta = self._metas.pop(collection.id)
            if meta.name is not None:
                self._names.pop((meta.tenant, meta.name), None)
            self._open.pop(collection.id, None)
        collection._close(flush=False)
        shutil.rmtree(collection.directory, ignore_errors=True)

    def close(self) -> None:
        """Write pending index snapshots and close every open collection."""
        with self._lock:
            for collection in self._open.values():
                collection._close()
            self._open.clear()

    def _remember(self, meta: Meta) -> None:
        self._metas[meta.id] = meta
        if meta.name is not None:
            self._names[(meta.tenant, meta.name)] = meta.id

    def _by_name(self, tenant: str, name: str) -> Meta | None:
        collection_id = self._names.get((tenant, name))
        return self._metas.get(collection_id) if collection_id else None

    def _load(self, meta: Meta) -> Collection:
        collection = self._open.get(meta.id)
        if collection is None:
            collection = Collection(
                self.root / meta.id, meta, self.embedder, self.encoding, self.config
            )
            self._open[meta.id] = collection
        return collection
