from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.dense import DenseIndex


def unit(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_flat_search_is_exact_and_remove_takes_vectors_out() -> None:
    rng = np.random.default_rng(0)
    vectors = unit(rng, 200)
    index = DenseIndex(32)
    index.add(np.arange(10, 210), vectors)
    assert index.kind == "flat"
    query = unit(rng, 1)[0]
    keys, scores = index.search(query, 5)
    exact = np.argsort(-(vectors @ query))[:5] + 10
    assert keys.tolist() == exact.tolist()
    np.testing.assert_allclose(scores, np.sort(vectors @ query)[::-1][:5], rtol=1e-5)
    assert index.remove(keys[:2]) == 2
    after, _ = index.search(query, 5)
    assert not set(keys[:2].tolist()) & set(after.tolist())
    assert after.tolist()[:3] == keys.tolist()[2:]
    assert len(index) == 198


def test_ivf_above_the_threshold_finds_stored_vectors_and_supports_removal() -> None:
    rng = np.random.default_rng(1)
    # clustered data, like real embeddings: IVF probing a few lists still finds neighbours
    centres = unit(rng, 20)
    vectors = centres[rng.integers(0, 20, 3000)] + 0.15 * unit(rng, 3000)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = DenseIndex(32, ivf_threshold=1000)
    index.add(np.arange(2000), vectors[:2000])
    index.search(vectors[0], 1)
    assert index.kind == "ivf"
    index.add(np.arange(2000, 3000), vectors[2000:])  # added to the trained index
    hits = sum(int(index.search(vectors[i], 1)[0][0] == i) for i in range(0, 3000, 37))
    assert hits >= 0.9 * len(range(0, 3000, 37))
    index.remove(np.array([0, 37, 74]))
    for i in (0, 37, 74):
        assert i not in index.search(vectors[i], 10)[0].tolist()


def test_vectors_for_returns_the_stored_rows() -> None:
    rng = np.random.default_rng(2)
    vectors = unit(rng, 50)
    index = DenseIndex(32)
    index.add(np.arange(100, 150)[::-1].copy(), vectors)  # keys added out of order
    np.testing.assert_array_equal(index.vectors_for(np.array([149, 100])), vectors[[0, 49]])


def test_save_and_load_round_trip_flat_and_ivf(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = unit(rng, 1500)
    for threshold, kind in ((10_000, "flat"), (1000, "ivf")):
        index = DenseIndex(32, ivf_threshold=threshold)
        index.add(np.arange(1500), vectors)
        index.remove(np.array([5]))
        folder = tmp_path / kind
        index.save(folder)
        loaded = DenseIndex.load(folder, 32, ivf_threshold=threshold)
        assert loaded.kind == kind and len(loaded) == 1499
        for i in (1, 700, 1499):
            want = index.search(vectors[i], 3)[0].tolist()
            assert loaded.search(vectors[i], 3)[0].tolist() == want
