from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import router
from router.artifact import save_artifact
from router.data import OutcomeTable
from router.metrics import apgr
from router.models import make_inputs
from router.policy import Calibration
from router.prior import is_free_form, prior_gain
from router.training import (
    HeadConfig,
    Prepared,
    TrainConfig,
    TrainResult,
    cv_folds,
    fit_knn,
    fit_lexical,
    prepare,
    train_router,
)
from tests.router.conftest import FakeEmbedder, synthetic_table

SMALL_CFG = TrainConfig(knn_ks=(10, 30), knn_dims=32, heads=(HeadConfig(0.1, 40, 5, 10),))


def _trained(n: int = 400) -> tuple[OutcomeTable, Prepared, TrainResult]:
    table = synthetic_table(n)
    d = prepare([table], [FakeEmbedder().embed(table.prompts)])
    return table, d, train_router(d, cv_folds(table.prompts, SMALL_CFG.n_folds), SMALL_CFG)


@pytest.fixture(scope="module")
def trained() -> tuple[OutcomeTable, Prepared, TrainResult]:
    return _trained()


def test_training_learns_the_synthetic_difficulty(
    trained: tuple[OutcomeTable, Prepared, TrainResult],
) -> None:
    table, d, result = trained
    # "hard" prompts gain 0.6 from the large model, "easy" ones 0.05: every learner sees it
    for name in ("knn30 gain", "topic gain", "lexical", "stacked", SMALL_CFG.heads[0].name):
        assert result.cv[name][0] > 0.7, (name, result.cv[name])
    assert result.head == SMALL_CFG.heads[0]
    # The trees alone (no prior) rank the training prompts by their topic.
    trees = result.model.model_scores(d.inputs())
    hard = np.array([s == "synthetic/hard" for s in table.sources])
    assert trees[hard].mean() > trees[~hard].mean() + 0.2
    assert apgr(trees, table.small, table.large) > 0.7


def test_artifact_round_trip_keeps_scores(
    trained: tuple[OutcomeTable, Prepared, TrainResult], tmp_path: Path
) -> None:
    table, d, result = trained
    scores = result.model.score_many(d.inputs())
    cal = Calibration(scores[:100], table.small[:100], table.large[:100])
    save_artifact(tmp_path / "r.npz", result.model, cal, np.array([1, 2], np.uint64), {"x": 1})
    loaded = router.Router.load(tmp_path / "r.npz")
    assert loaded.model.prior_scale == pytest.approx(result.model.prior_scale)
    emb = FakeEmbedder().embed(table.prompts)
    np.testing.assert_allclose(loaded.score_many(table.prompts, emb), scores, atol=1e-5)
    one = loaded.score(table.prompts[0], emb[0].tolist())
    assert one == pytest.approx(scores[0], abs=1e-5)
    assert loaded.meta["x"] == 1
    pol = loaded.policy("auto", "s", "l", large_share=0.3)
    assert abs(cal.large_share_at(pol.threshold) - 0.3) <= 0.03


def test_prior_blends_only_free_form_prompts(
    trained: tuple[OutcomeTable, Prepared, TrainResult],
) -> None:
    model = trained[2].model
    emb = FakeEmbedder().embed(["x"])[0]
    mcq = "Which planet is red?\nA) Venus\nB) Mars\nAnswer:"
    free = "Which planet is red?"
    assert not is_free_form(mcq) and is_free_form(free)
    x_mcq, x_free = make_inputs(mcq, emb), make_inputs(free, emb)
    trees = model.model_scores([x_mcq, x_free])
    assert model.score(x_mcq) == pytest.approx(trees[0])
    w, c = model.prior_weight, model.prior_scale
    assert 0 < w < 1
    expected = (1 - w) * trees[1] + w * c * prior_gain(free)
    assert model.score(x_free) == pytest.approx(expected)


def test_prior_orders_requests_by_what_they_ask() -> None:
    assert prior_gain("Thanks!") < prior_gain("What is the capital of France?")
    assert prior_gain("Write a haiku about autumn.") < prior_gain(
        "Solve x^2 - 5x + 6 = 0 step by step and verify both roots."
    )
    assert prior_gain("Translate 'hello' into Spanish.") < prior_gain(
        "Implement a thread-safe LRU cache in Rust and explain its complexity."
    )
    assert all(0.02 <= prior_gain(t) <= 0.5 for t in ("", "x" * 10_000, "1 + 1 = " * 500))


def test_neighbour_block_single_row_matches_batch(
    trained: tuple[OutcomeTable, Prepared, TrainResult],
) -> None:
    _, d, _ = trained
    knn = fit_knn(d, (5, 50, 10_000), 16)  # a k above the bank size uses the whole bank
    xs = d.inputs()[:20]
    batch = knn.transform(xs)
    single = np.vstack([knn.transform([x]) for x in xs])
    assert batch.shape == single.shape == (20, 9)
    # The single-row path (einsum) and the batch path (BLAS) sum in different orders, so a
    # neighbour tied within float rounding at the k-th place may differ; elsewhere they agree.
    sims = np.sort(knn.project(np.stack([x.embedding for x in xs])) @ knn.bank.T)[:, ::-1]
    checked = 0
    for row in range(len(xs)):
        for j, k in enumerate(knn.ks):
            if k < sims.shape[1] and sims[row, k - 1] - sims[row, k] < 1e-5:
                continue
            np.testing.assert_allclose(single[row, 3 * j:3 * j + 3],
                                       batch[row, 3 * j:3 * j + 3], atol=1e-5)
            checked += 1
    assert checked >= 50  # of 60: ties are rare
    whole = batch[:, 6:9]  # k = everything: the bank's mean qualities
    np.testing.assert_allclose(whole[:, 0], np.float16(d.small).mean(), atol=1e-3)


def test_lexical_block_matches_sklearn() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    table = synthetic_table(300, seed=3)
    d = prepare([table], [FakeEmbedder().embed(table.prompts)])
    lex = fit_lexical(d, c=0.3, min_df=2, max_terms=1000)
    vec = TfidfVectorizer(analyzer=lambda t: t, min_df=2, max_features=1000, sublinear_tf=True)
    a = vec.fit_transform(d.terms)
    logits = [LogisticRegression(C=0.3, max_iter=3000).fit(a, q).decision_function(a)
              for q in (d.small.astype(int), d.large.astype(int))]  # fmt: skip
    np.testing.assert_allclose(lex.transform(d.inputs()), np.column_stack(logits), atol=1e-4)


def test_was_seen_marks_training_prompts(
    trained: tuple[OutcomeTable, Prepared, TrainResult], tmp_path: Path
) -> None:
    from router.artifact import prompt_hashes

    table, _, result = trained
    cal = Calibration(np.arange(3.0), np.zeros(3), np.ones(3))
    save_artifact(tmp_path / "r", result.model, cal, prompt_hashes(table.prompts[:50]), {})
    loaded = router.Router.load(tmp_path / "r.json")
    seen = loaded.was_seen(table.prompts[:60])
    assert seen[:50].all() and not seen[50:].any()


def test_shipped_router_loads_and_scores_fast_without_torch_or_sklearn() -> None:
    code = (
        "import sys, time, numpy as np, router\n"
        "r = router.load_default()\n"
        "e = np.ones(384, np.float32) / np.sqrt(384)\n"
        "s = r.score('What is the integral of x^2 from 0 to 3?', e)\n"
        "assert np.isfinite(s)\n"
        "heavy = ('torch', 'sklearn', 'scipy', 'sentence_transformers')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "assert not bad, bad\n"
        "p = r.policy('auto', 'small', 'large', large_share=0.3)\n"
        "assert abs(r.calibration.large_share_at(p.threshold) - 0.3) <= 0.03\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_shipped_artifact_is_small_and_documented() -> None:
    npz = router.default_artifact_path()
    assert npz.stat().st_size < 6 * 2**20
    meta = router.load_default().meta
    assert meta["command"].startswith("frugate router train --data")
    assert "stacked" in meta["cv_apgr"]
    assert "query_window" in meta["embedder"]


@pytest.mark.parametrize("share", [0.1, 0.3, 0.5])
def test_shipped_calibration_hits_large_share(share: float) -> None:
    r = router.load_default()
    p = r.policy("auto", "small", "large", large_share=share)
    assert abs(r.calibration.large_share_at(p.threshold) - share) <= 0.03
