"""The process-wide text embedder shared by the cache, the router and RAG.

One model per process; concurrent callers are micro-batched by `BatchingEmbedder`.
"""

from embedder.base import Embedder
from embedder.batching import BatchingEmbedder
from embedder.minilm import DIM, MiniLMEmbedder, model_dir

__all__ = ["DIM", "BatchingEmbedder", "Embedder", "MiniLMEmbedder", "model_dir"]
