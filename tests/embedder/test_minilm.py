"""The real model. The first ONNX run exports the model (~30 s once per machine)."""

from __future__ import annotations

import numpy as np
import pytest

from embedder import MiniLMEmbedder

TEXTS = [
    "How do I reset my password?",
    "How can I reset my password?",
    "What is the boiling point of water at high altitude?",
    "",
    "word " * 400,  # longer than max_seq_length: truncated, not an error
]


@pytest.fixture(scope="module")
def onnx() -> MiniLMEmbedder:
    return MiniLMEmbedder(backend="onnx")


def test_onnx_vectors_are_normalised_and_meaningful(onnx: MiniLMEmbedder) -> None:
    assert onnx.backend == "onnx"
    v = onnx.embed(TEXTS)
    assert v.shape == (len(TEXTS), 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.9 > v[0] @ v[2]
    assert onnx.embed([]).shape == (0, 384)


def test_batch_order_and_padding_do_not_change_vectors(onnx: MiniLMEmbedder) -> None:
    together = onnx.embed(TEXTS)
    alone = np.stack([onnx.embed([t])[0] for t in TEXTS])
    assert np.abs(together - alone).max() < 1e-4


@pytest.mark.slow
def test_onnx_matches_sentence_transformers(onnx: MiniLMEmbedder) -> None:
    torch_model = MiniLMEmbedder(backend="torch")
    a, b = torch_model.embed(TEXTS), onnx.embed(TEXTS)
    assert (a * b).sum(axis=1).min() > 0.9999
