"""Wire models of the OpenAI surface (pydantic, `extra="allow"`: unknown fields pass through)."""

from gateway.protocol.chat import ChatCompletionRequest, ChatMessage
from gateway.protocol.common import FrugateControls, parse_body
from gateway.protocol.completions import CompletionRequest
from gateway.protocol.embeddings import EmbeddingRequest

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "EmbeddingRequest",
    "FrugateControls",
    "parse_body",
]
