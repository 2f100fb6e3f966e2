"""One collection's durable store: a SQLite file holding the source documents and their chunks.

It is the source of truth: the search indexes are snapshots derived from it (rebuilt from
the chunk rows, vectors included, if a snapshot is missing or stale), and `reindex`
re-parses the stored sources.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.records import DocumentInfo

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    filename TEXT,
    content_type TEXT,
    format TEXT NOT NULL,
    title TEXT NOT NULL,
    given_title TEXT,
    metadata TEXT NOT NULL,
    source BLOB NOT NULL,
    bytes INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    key INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    context TEXT NOT NULL,
    page INTEGER,
    n_tokens INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO state VALUES ('generation', 0), ('next_key', 1);
"""

_DOC_COLUMNS = "id, filename, content_type, format, title, metadata, bytes, chunk_count, created_at"


@dataclass(frozen=True)
class ChunkRow:
    key: int
    chunk_id: str
    doc_id: str
    position: int
    text: str
    context: str
    page: int | None
    n_tokens: int


@dataclass(frozen=True)
class StoredDocument:
    info: DocumentInfo
    source: bytes  # the upload as received (text is stored UTF-8 encoded)
    given_title: str | None  # the caller's title override, kept for reindex
    chunks: Sequence[ChunkRow]
    vectors: npt.NDArray[np.float32]


class CollectionDB:
    """Thread-safe (one connection, one lock); each public write is one transaction."""

    def __init__(self, path: Path, collection_id: str) -> None:
        self.collection_id = collection_id
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _state(self, conn: sqlite3.Connection, name: str) -> int:
        return int(conn.execute("SELECT value FROM state WHERE name=?", (name,)).fetchone()[0])

    def generation(self) -> int:
        with self._lock:
            return self._state(self._conn, "generation")

    # -- writes ---------------------------------------------------------------------------

    def insert(self, docs: Sequence[StoredDocument]) -> list[list[int]]:
        """Insert documents with their chunks; returns the chunk keys given to each document."""
        with self._tx() as conn:
            next_key = self._state(conn, "next_key")
            all_keys = []
            for doc in docs:
                info = doc.info
                conn.execute(
                    "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (info.id, info.filename, info.content_type, info.format, info.title,
                     doc.given_title, json.dumps(info.metadata), doc.source, info.bytes,
                     info.chunk_count, info.created_at),
                )
                keys = list(range(next_key, next_key + len(doc.chunks)))
                next_key += len(doc.chunks)
                conn.executemany(
                    "INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?)",
                    [
                        (key, c.chunk_id, info.id, c.position, c.text, c.context, c.page,
                         c.n_tokens, vec.astype(np.float32).tobytes())
                        for key, c, vec in zip(keys, doc.chunks, doc.vectors, strict=True)
                    ],
                )
                all_keys.append(keys)
            conn.execute("UPDATE state SET value=? WHERE name='next_key'", (next_key,))
            conn.execute("UPDATE state SET value=value+1 WHERE name='generation'")
        return all_keys

    def delete(self, doc_id: str) -> list[int] | None:
        """Delete a document and its chunks; returns the removed chunk keys (None: no such doc)."""
        with self._tx() as conn:
            keys = [r[0] for r in conn.execute("SELECT key FROM chunks WHERE doc_id=?", (doc_id,))]
            cur = conn.execute("DELETE FROM documents WHERE id=?", (doc_id,))
            if cur.rowcount == 0:
                return None
            conn.execute("UPDATE state SET value=value+1 WHERE name='generation'")
        return keys

    def replace_chunks(
        self, doc_id: str, title: str, fmt: str, chunks: Sequence[ChunkRow],
        vectors: npt.NDArray[np.float32],
    ) -> tuple[list[int], list[int]]:
        """Swap a document's chunks (reindex); returns (old keys, new keys)."""
        with self._tx() as conn:
            old = [r[0] for r in conn.execute("SELECT key FROM chunks WHERE doc_id=?", (doc_id,))]
            conn.execute("DELETE FROM chunks WHERE doc_id=?", (doc_id,))
            next_key = self._state(conn, "next_key")
            new = list(range(next_key, next_key + len(chunks)))
            conn.executemany(
                "INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (key, c.chunk_id, doc_id, c.position, c.text, c.context, c.page, c.n_tokens,
                     vec.astype(np.float32).tobytes())
                    for key, c, vec in zip(new, chunks, vectors, strict=True)
                ],
            )
            conn.execute(
                "UPDATE documents SET title=?, format=?, chunk_count=? WHERE id=?",
                (title, fmt, len(chunks), doc_id),
            )
            conn.execute("UPDATE state SET value=? WHERE name='next_key'", (next_key + len(new),))
            conn.execute("UPDATE state SET value=value+1 WHERE name='generation'")
        return old, new

    # -- reads ----------------------------------------------------------------------------

    def has_document(self, doc_id: str) -> bool:
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM documents WHERE id=?", (doc_id,)).fetchone()
        return row is not None

    def document(self, doc_id: str) -> DocumentInfo | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_DOC_COLUMNS} FROM documents WHERE id=?", (doc_id,)
            ).fetchone()
        return self._doc_info(row) if row else None

    def documents(self) -> list[DocumentInfo]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_DOC_COLUMNS} FROM documents ORDER BY created_at, id"
            ).fetchall()
        return [self._doc_info(r) for r in rows]

    def source(self, doc_id: str) -> tuple[bytes, str | None] | None:
        """The stored upload and the caller's title override."""
        with self._lock:
            row = self._conn.execute(
                "SELECT source, given_title FROM documents WHERE id=?", (doc_id,)
            ).fetchone()
        return (bytes(row[0]), row[1]) if row else None

    def totals(self) -> tuple[int, int, int]:
        """(documents, chunks, source bytes)."""
        with self._lock:
            docs, size = self._conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM documents"
            ).fetchone()
            chunks = self._conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return int(docs), int(chunks), int(size)

    def chunks(self, keys: Sequence[int]) -> dict[int, tuple[ChunkRow, DocumentInfo]]:
        """Chunk rows with their document, for the given keys (missing keys are skipped)."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT c.key, c.chunk_id, c.doc_id, c.position, c.text, c.context, c.page, "
                f"c.n_tokens, {', '.join('d.' + c.strip() for c in _DOC_COLUMNS.split(','))} "
                f"FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.key IN ({marks})",
                list(keys),
            ).fetchall()
        return {r[0]: (ChunkRow(*r[:8]), self._doc_info(r[8:])) for r in rows}

    def all_chunks(self) -> tuple[list[ChunkRow], npt.NDArray[np.float32]]:
        """Every chunk with its vector, in key order: what the indexes are rebuilt from."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, chunk_id, doc_id, position, text, context, page, n_tokens, vector "
                "FROM chunks ORDER BY key"
            ).fetchall()
        chunks = [ChunkRow(*r[:8]) for r in rows]
        if not rows:
            return chunks, np.zeros((0, 0), dtype=np.float32)
        vectors = np.stack([np.frombuffer(r[8], dtype=np.float32) for r in rows])
        return chunks, vectors

    def doc_keys(self) -> dict[int, str]:
        """chunk key -> document id, for every chunk."""
        with self._lock:
            return dict(self._conn.execute("SELECT key, doc_id FROM chunks").fetchall())

    def _doc_info(self, row: Sequence[Any]) -> DocumentInfo:
        return DocumentInfo(
            id=row[0], collection_id=self.collection_id, filename=row[1], content_type=row[2],
            format=row[3], title=row[4], metadata=json.loads(row[5]), bytes=row[6],
            chunk_count=row[7], created_at=row[8],
        )
