"""One collection: ingestion, persistence, hybrid search. `rag.store` finds them per tenant.

On disk, one folder per collection under the store root:
  collection.json   identity, owner, chunking settings
  store.sqlite      source documents + chunks + vectors (the source of truth)
  index/            snapshot of the BM25 and dense indexes, tagged with the SQLite generation
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tiktoken

from embedder.base import Embedder
from rag.chunking import Chunker
from rag.errors import (
    CollectionNotFound,
    DocumentExists,
    DocumentNotFound,
    InvalidDocument,
)
from rag.parsing import parse_document
from rag.records import CollectionInfo, DocumentInfo, DocumentInput, Hit, SearchMode
from rag.retrieval import HybridIndex, RetrievalConfig
from rag.storage import ChunkRow, CollectionDB, StoredDocument

Progress = Callable[[int, int], None]  # (chunks embedded so far, chunks in the batch)
InvalidHandler = Callable[[DocumentInput, InvalidDocument], None]
_EMBED_BATCH = 64
_SNAPSHOT_EAGER_CHUNKS = 20_000  # below this, every change rewrites the snapshot at once


@dataclass(frozen=True)
class Meta:
    """What `collection.json` holds."""

    id: str
    name: str | None
    tenant: str
    team: str | None
    description: str
    metadata: dict[str, Any]
    created_at: float
    chunk_tokens: int
    overlap_tokens: int

    def visible_to(self, tenant: str, team: str | None) -> bool:
        return self.tenant == tenant and (team is None or self.team in (None, team))


@dataclass(frozen=True)
class _Prepared:
    stored: StoredDocument
    texts: list[str]  # indexed texts, aligned with stored.chunks


class Collection:
    """One collection. Obtain it from `CollectionStore.get/create`; safe to share between threads.

    Searches hold the collection lock only for the index lookups (milliseconds); ingestion
    parses and embeds outside the lock, so it can run in a worker thread next to searches.
    """

    def __init__(
        self, directory: Path, meta: Meta, embedder: Embedder, encoding: tiktoken.Encoding,
        config: RetrievalConfig,
    ) -> None:
        self.directory = directory
        self._meta = meta
        self._embedder = embedder
        self._chunker = Chunker(encoding, meta.chunk_tokens, meta.overlap_tokens)
        self._config = config
        self._lock = threading.RLock()
        self._dirty = False
        self._db = CollectionDB(directory / "store.sqlite", meta.id)
        # the indexes load on first use: listing collections only touches SQLite
        self._loaded: HybridIndex | None = None
        self._doc_of: dict[int, str] = {}  # chunk key -> document id, loaded with the index
        self._closed = False

    @property
    def id(self) -> str:
        return self._meta.id

    @property
    def name(self) -> str | None:
        return self._meta.name

    @property
    def tenant(self) -> str:
        return self._meta.tenant

    @property
    def team(self) -> str | None:
        return self._meta.team

    def info(self) -> CollectionInfo:
        self._check_open()
        docs, chunks, size = self._db.totals()
        m = self._meta
        return CollectionInfo(
            id=m.id, name=m.name, tenant=m.tenant, team=m.team, description=m.description,
            metadata=dict(m.metadata), created_at=m.created_at, document_count=docs,
            chunk_count=chunks, bytes=size,
        )

    # -- documents ------------------------------------------------------------------------

    def add_document(
        self,
        content: bytes | str,
        *,
        doc_id: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> DocumentInfo:
        """Parse, chunk, embed and index one document. Raises InvalidDocument, DocumentExists."""
        doc = DocumentInput(content, doc_id, filename, content_type, title, metadata or {})
        return self.add_documents([doc])[0]

    def add_documents(
        self, docs: Sequence[DocumentInput], progress: Progress | None = None,
        save: bool | None = None, on_invalid: InvalidHandler | None = None,
    ) -> list[DocumentInfo]:
        """Ingest a batch (one transaction; embeddings batched).

        The SQLite rows are committed either way; `save` is about the index snapshot:
        True writes it now, False leaves it to `flush()`/`close()` (bulk loads), None (the
        default) writes it now while the collection is small and defers it for big ones,
        where a snapshot is hundreds of MB. A snapshot that is stale when the collection is
        next opened (a crash) is rebuilt from the SQLite rows: slower, never lossy.

        A document that cannot be parsed raises InvalidDocument (nothing is added), unless
        `on_invalid` is given: then it is reported there and the others are added.
        """
        self._check_open()
        ids = [d.doc_id or f"doc_{secrets.token_hex(12)}" for d in docs]
        seen: set[str] = set()
        for doc_id in ids:
            if doc_id in seen or self._db.has_document(doc_id):
                raise DocumentExists(doc_id)
            seen.add(doc_id)
        prepared = []
        for doc, doc_id in zip(docs, ids, strict=True):
            try:
                prepared.append(self._prepare(doc, doc_id))
            except InvalidDocument as exc:
                if on_invalid is None:
                    raise
                on_invalid(doc, exc)
        ids = [p.stored.info.id for p in prepared]
        texts = [t for p in prepared for t in p.texts]
        vectors = self._embed(texts, progress)
        start = 0
        ready = []
        for p in prepared:
            n = len(p.texts)
            stored = p.stored
            ready.append(
                StoredDocument(
                    stored.info, stored.source, stored.given_title, stored.chunks,
                    vectors[start : start + n],
                )
            )
            start += n
        with self._lock:
            self._check_open()
            index = self._index  # loaded before the store changes, so it is not rebuilt twice
            for doc_id in ids:  # another thread may have won the race for an id
                if self._db.has_document(doc_id):
                    raise DocumentExists(doc_id)
            key_lists = self._db.insert(ready)
            keys = np.asarray([k for ks in key_lists for k in ks], dtype=np.int64)
            index.add(keys, texts, vectors)
            for doc_keys, p in zip(key_lists, prepared, strict=True):
                self._doc_of.update(dict.fromkeys(doc_keys, p.stored.info.id))
            self._changed(save)
        return [p.stored.info for p in prepared]

    def documents(self) -> list[DocumentInfo]:
        self._check_open()
        return self._db.documents()

    def document(self, doc_id: str) -> DocumentInfo:
        self._check_open()
        info = self._db.document(doc_id)
        if info is None:
            raise DocumentNotFound(doc_id)
        return info

    def delete_document(self, doc_id: str) -> None:
        """Remove a document from the store and from both indexes."""
        with self._lock:
            self._check_open()
            index = self._index
            keys = self._db.delete(doc_id)
            if keys is None:
                raise DocumentNotFound(doc_id)
            index.remove(np.asarray(keys, dtype=np.int64))
            for key in keys:
                self._doc_of.pop(key, None)
            self._changed(None)

    def reindex(self, progress: Progress | None = None) -> int:
        """Re-parse, re-chunk and re-embed every stored document; returns the chunk count.

        Searches keep working on the old chunks until the new ones are swapped in.
        """
        self._check_open()
        total = 0
        for info in self._db.documents():
            stored = self._db.source(info.id)
            if stored is None:  # deleted meanwhile
                continue
            source, given_title = stored
            doc = DocumentInput(
                source, info.id, info.filename, info.content_type, given_title, info.metadata
            )
            p = self._prepare(doc, info.id)
            vectors = self._embed(p.texts, progress)
            with self._lock:
                index = self._index
                if not self._db.has_document(info.id):
                    continue
                old, new = self._db.replace_chunks(
                    info.id, p.stored.info.title, p.stored.info.format, p.stored.chunks, vectors
                )
                index.remove(np.asarray(old, dtype=np.int64))
                index.add(np.asarray(new, dtype=np.int64), p.texts, vectors)
                for key in old:
                    self._doc_of.pop(key, None)
                self._doc_of.update(dict.fromkeys(new, info.id))
            total += len(new)
        with self._lock:
            self._index.bm25.compact()  # drop the replaced rows
            self._save_snapshot()
        return total

    def flush(self) -> None:
        """Write the index snapshot if it is behind the store."""
        with self._lock:
            self._check_open()
            if self._dirty:
                self._save_snapshot()

    # -- search ---------------------------------------------------------------------------

    def search(
        self,
        query_text: str,
        query_vector: npt.NDArray[np.float32] | None = None,
        k: int = 5,
        mode: SearchMode = "fused",
    ) -> list[Hit]:
        """Top-k chunks. Pass the request's precomputed embedding as `query_vector`;
        without it, dense and fused modes embed `query_text` here."""
        self._check_open()
        if query_vector is None and mode != "bm25":
            query_vector = self._embedder.embed([query_text])[0]
        with self._lock:
            self._check_open()
            keys, scores = self._index.search(query_text, query_vector, k, mode)
            rows = self._db.chunks(keys.tolist())
        hits = []
        for key, score in zip(keys.tolist(), scores.tolist(), strict=True):
            chunk, doc = rows[key]
            hits.append(
                Hit(
                    chunk_id=chunk.chunk_id, doc_id=chunk.doc_id, text=chunk.text,
                    title=doc.title, context=chunk.context, score=float(score),
                    position=chunk.position, n_tokens=chunk.n_tokens, filename=doc.filename,
                    page=chunk.page, metadata=doc.metadata,
                )
            )
        return hits

    def search_documents(
        self,
        query_text: str,
        query_vector: npt.NDArray[np.float32] | None = None,
        k: int = 10,
        mode: SearchMode = "fused",
    ) -> list[tuple[str, float]]:
        """Top-k documents (best chunk per document decides), for evaluation and listings."""
        self._check_open()
        if query_vector is None and mode != "bm25":
            query_vector = self._embedder.embed([query_text])[0]
        depth = max(4 * k, 50)
        while True:
            with self._lock:
                keys, scores = self._index.search(query_text, query_vector, depth, mode)
                n_chunks = len(self._index)
                ranked: dict[str, float] = {}
                for key, score in zip(keys.tolist(), scores.tolist(), strict=True):
                    doc_id = self._doc_of.get(key)
                    if doc_id is not None and doc_id not in ranked:
                        ranked[doc_id] = float(score)
            if len(ranked) >= k or len(keys) < depth or depth >= n_chunks:
                return list(ranked.items())[:k]
            depth *= 2

    # -- internals ------------------------------------------------------------------------

    def _prepare(self, doc: DocumentInput, doc_id: str) -> _Prepared:
        parsed = parse_document(doc.content, doc.filename, doc.content_type, doc.title)
        chunks = self._chunker.chunk(parsed)
        source = doc.content.encode("utf-8") if isinstance(doc.content, str) else doc.content
        metadata = dict(doc.metadata)
        rows = [
            ChunkRow(
                key=0, chunk_id=_chunk_id(doc_id, c.position, c.text), doc_id=doc_id,
                position=c.position, text=c.text, context=c.context, page=c.page,
                n_tokens=c.n_tokens,
            )
            for c in chunks
        ]
        info = DocumentInfo(
            id=doc_id, collection_id=self.id, filename=doc.filename,
            content_type=doc.content_type, format=parsed.format, title=parsed.title,
            metadata=metadata, bytes=len(source), chunk_count=len(rows), created_at=time.time(),
        )
        empty = np.zeros((0, self._embedder.dim), dtype=np.float32)
        stored = StoredDocument(info, source, doc.title, rows, empty)
        return _Prepared(stored, [c.indexed_text for c in chunks])

    def _embed(self, texts: list[str], progress: Progress | None) -> npt.NDArray[np.float32]:
        parts = [np.zeros((0, self._embedder.dim), dtype=np.float32)]
        for start in range(0, len(texts), _EMBED_BATCH):
            parts.append(self._embedder.embed(texts[start : start + _EMBED_BATCH]))
            if progress:
                progress(min(start + _EMBED_BATCH, len(texts)), len(texts))
        return np.concatenate(parts).astype(np.float32, copy=False)

    @property
    def _index(self) -> HybridIndex:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._open_index()
                self._doc_of = self._db.doc_keys()
            return self._loaded

    def _open_index(self) -> HybridIndex:
        snapshot = self.directory / "index"
        marker = snapshot / "generation"
        if marker.exists() and int(marker.read_text()) == self._db.generation():
            try:
                return HybridIndex.load(snapshot, self._embedder.dim, self._config)
            except (OSError, ValueError, KeyError):
                pass  # unreadable snapshot: fall through to a rebuild
        self._loaded = self._rebuild_index()
        self._save_snapshot()
        return self._loaded

    def _rebuild_index(self) -> HybridIndex:
        chunks, vectors = self._db.all_chunks()
        index = HybridIndex(self._embedder.dim, self._config)
        if chunks:
            index.add(
                np.asarray([c.key for c in chunks], dtype=np.int64),
                [_indexed(c) for c in chunks], vectors,
            )
        return index

    def _changed(self, save: bool | None) -> None:
        self._dirty = True
        if save or (save is None and len(self._doc_of) < _SNAPSHOT_EAGER_CHUNKS):
            self._save_snapshot()

    def _save_snapshot(self) -> None:
        tmp = self.directory / "index.tmp"
        final = self.directory / "index"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        assert self._loaded is not None
        self._loaded.save(tmp)
        (tmp / "generation").write_text(str(self._db.generation()))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        self._dirty = False

    def _check_open(self) -> None:
        if self._closed:
            raise CollectionNotFound(self._meta.id)

    def _close(self, flush: bool = True) -> None:
        with self._lock:
            if flush and self._dirty and not self._closed:
                self._save_snapshot()
            self._closed = True
            self._db.close()


def _chunk_id(doc_id: str, position: int, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return f"{doc_id}#{position}-{digest}"


def _indexed(chunk: ChunkRow) -> str:
    return f"{chunk.context}\n{chunk.text}" if chunk.context else chunk.text
