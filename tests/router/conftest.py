from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from router.data import OutcomeTable

TOPICS = {
    # topic: (words, P(small ok), P(large ok))
    "easy": (["capital", "colour", "animal", "river", "city"], 0.9, 0.95),
    "hard": (["integral", "theorem", "proof", "lemma", "tensor"], 0.3, 0.9),
}


class FakeEmbedder:
    """Deterministic unit vectors from word hashes: similar wording -> similar vectors."""

    dim = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                h = int.from_bytes(hashlib.sha256(w.encode()).digest()[:4], "little")
                out[i, h % self.dim] += 1.0
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-9)
        return out


def synthetic_table(n: int, seed: int = 0) -> OutcomeTable:
    rng = np.random.default_rng(seed)
    prompts, small, large, sources = [], [], [], []
    for i in range(n):
        topic = "hard" if rng.random() < 0.4 else "easy"
        words, p_small, p_large = TOPICS[topic]
        body = " ".join(rng.choice(words, size=4))
        prompts.append(f"Q{i}: explain the {body}?")
        small.append(float(rng.random() < p_small))
        large.append(float(rng.random() < p_large))
        sources.append(f"synthetic/{topic}")
    return OutcomeTable(prompts, np.array(small), np.array(large), sources)


def write_table(path: Path, table: OutcomeTable) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "small_quality", "large_quality", "source"])
        for row in zip(table.prompts, table.small, table.large, table.sources, strict=True):
            w.writerow(row)
    return path


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()
