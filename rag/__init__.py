"""frugate's RAG library: tenant collections, hybrid (dense + BM25) retrieval, grounding.

Typical use from the gateway:

    store = CollectionStore(data_dir / "rag", embedder)
    collection = store.get(tenant_id, "handbook", team=team_id)   # CollectionNotFound if not theirs
    hits = collection.search(last_user_text, query_vector, k=5)
    message, citations = build_grounding(hits, max_tokens=2000)
    messages = insert_grounding(messages, message)

Never imports `gateway`.
"""

from rag.chunking import Chunk, Chunker, default_bpe_path, load_encoding
from rag.collections import Collection
from rag.embedcache import EmbeddingCache
from rag.errors import (
    CollectionExists,
    CollectionNotFound,
    Conflict,
    DocumentExists,
    DocumentNotFound,
    InvalidDocument,
    NotFound,
    RagError,
)
from rag.evaluation import (
    Query,
    evaluate_collection,
    evaluate_run,
    load_qrels,
    load_queries,
    ndcg_at_k,
    read_jsonl,
    recall_at_k,
)
from rag.grounding import Citation, build_grounding, citations_header, insert_grounding
from rag.parsing import ParsedDocument, Section, parse_document
from rag.records import (
    SEARCH_MODES,
    CollectionInfo,
    DocumentInfo,
    DocumentInput,
    Hit,
    SearchMode,
)
from rag.retrieval import RetrievalConfig
from rag.store import CollectionStore

__all__ = [
    "SEARCH_MODES",
    "Chunk",
    "Chunker",
    "Citation",
    "Collection",
    "CollectionExists",
    "CollectionInfo",
    "CollectionNotFound",
    "CollectionStore",
    "Conflict",
    "DocumentExists",
    "DocumentInfo",
    "DocumentInput",
    "DocumentNotFound",
    "EmbeddingCache",
    "Hit",
    "InvalidDocument",
    "NotFound",
    "ParsedDocument",
    "Query",
    "RagError",
    "RetrievalConfig",
    "SearchMode",
    "Section",
    "build_grounding",
    "citations_header",
    "default_bpe_path",
    "evaluate_collection",
    "evaluate_run",
    "insert_grounding",
    "load_encoding",
    "load_qrels",
    "load_queries",
    "ndcg_at_k",
    "parse_document",
    "read_jsonl",
    "recall_at_k",
]
