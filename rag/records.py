"""The plain records the rag API hands out: collections, documents, hits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SearchMode = Literal["fused", "dense", "bm25"]
SEARCH_MODES: tuple[SearchMode, ...] = ("fused", "dense", "bm25")


@dataclass(frozen=True)
class CollectionInfo:
    id: str  # "vs_..." so the OpenAI vector-store surface can use it as is
    name: str | None  # unique within the tenant when set
    tenant: str
    team: str | None  # None: visible to the whole tenant
    description: str
    metadata: dict[str, Any]
    created_at: float  # unix seconds
    document_count: int
    chunk_count: int
    bytes: int  # size of the stored source documents


@dataclass(frozen=True)
class DocumentInfo:
    id: str
    collection_id: str
    filename: str | None
    content_type: str | None
    format: str  # text | markdown | html | pdf
    title: str
    metadata: dict[str, Any]
    bytes: int
    chunk_count: int
    created_at: float


@dataclass(frozen=True)
class DocumentInput:
    """One document to ingest; `content` is the raw upload (bytes) or already-decoded text."""

    content: bytes | str
    doc_id: str | None = None
    filename: str | None = None
    content_type: str | None = None
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    chunk_id: str  # stable while the chunk's text is unchanged (content hash inside)
    doc_id: str
    text: str  # the chunk body
    title: str  # the document title
    context: str  # "Title > Heading > ..." of the chunk
    score: float  # mode-specific: cosine (dense), BM25, or fused RRF score
    position: int  # chunk order within the document
    n_tokens: int
    filename: str | None = None
    page: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # the document's metadata
