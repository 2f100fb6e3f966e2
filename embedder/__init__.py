"""The process-wide text embedder shared by the cache, the router and RAG.

One model per process; concurrent callers are micro-batched by `BatchingEmbedder`.
`query_window(text)` is the text to embed for a request: the text itself when it fits the
model's 256 word pieces, else its first and last pieces (see `embedder.window`).
"""

from embedder.base import Embedder
from embedder.batching import BatchingEmbedder
from embedder.minilm import DIM, MiniLMEmbedder, model_dir
from embedder.window import QueryWindow, query_window

__all__ = [
    "DIM",
    "BatchingEmbedder",
    "Embedder",
    "MiniLMEmbedder",
    "QueryWindow",
    "model_dir",
    "query_window",
]
