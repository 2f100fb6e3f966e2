from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import router
from router.artifact import save_artifact
from router.policy import Calibration
from router.training import TrainConfig, cv_folds, fit_lexical, prepare, train_router
from tests.router.conftest import FakeEmbedder, synthetic_table

SMALL_CFG = TrainConfig(knn_ks=(10, 30), knn_dims=32, weight_grid=(0.0, 1.0))


def _trained(n: int = 400) -> tuple[router.OutcomeTable, object, object]:
    table = synthetic_table(n)
    d = prepare([table], [FakeEmbedder().embed(table.prompts)])
    return table, d, train_router(d, cv_folds(table.prompts, SMALL_CFG.n_folds), SMALL_CFG)


def test_training_learns_the_synthetic_difficulty() -> None:
    _, _, result = _trained()
    # "hard" prompts gain 0.6 from the large model, "easy" ones 0.05: every learner sees it
    for name in ("knn10", "knn30", "topic", "lexical", "ensemble"):
        assert result.cv[name][0] > 0.7, (name, result.cv[name])
    assert {"topic", "lexical", "dense"} < set(result.weights)


def test_artifact_round_trip_keeps_scores(tmp_path: Path) -> None:
    table, d, result = _trained()
    scores = result.model.score_many(d.inputs())
    cal = Calibration(scores[:100], table.small[:100], table.large[:100])
    save_artifact(tmp_path / "r.npz", result.model, cal, np.array([1, 2], np.uint64), {"x": 1})
    loaded = router.Router.load(tmp_path / "r.npz")
    emb = FakeEmbedder().embed(table.prompts)
    np.testing.assert_allclose(loaded.score_many(table.prompts, emb), scores, atol=1e-5)
    one = loaded.score(table.prompts[0], emb[0].tolist())
    assert one == pytest.approx(scores[0], abs=1e-5)
    assert loaded.meta["x"] == 1
    pol = loaded.policy("auto", "s", "l", large_share=0.3)
    assert abs(cal.large_share_at(pol.threshold) - 0.3) <= 0.03


def test_lexical_scorer_matches_sklearn() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    table = synthetic_table(300, seed=3)
    d = prepare([table], [FakeEmbedder().embed(table.prompts)])
    lex = fit_lexical(d, c=0.3, min_df=2, max_terms=1000)
    vec = TfidfVectorizer(analyzer=lambda t: t, min_df=2, max_features=1000, sublinear_tf=True)
    a = vec.fit_transform(d.terms)
    p = [LogisticRegression(C=0.3, max_iter=3000).fit(a, q).predict_proba(a)[:, 1]
         for q in (d.small.astype(int), d.large.astype(int))]  # fmt: skip
    np.testing.assert_allclose(lex.score_many(d.inputs()), p[1] - p[0], atol=1e-4)


def test_was_seen_marks_training_prompts(tmp_path: Path) -> None:
    from router.artifact import prompt_hashes

    table, _, result = _trained(200)
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
    assert "ensemble" in meta["cv_apgr"]


@pytest.mark.parametrize("share", [0.1, 0.3, 0.5])
def test_shipped_calibration_hits_large_share(share: float) -> None:
    r = router.load_default()
    p = r.policy("auto", "small", "large", large_share=share)
    assert abs(r.calibration.large_share_at(p.threshold) - share) <= 0.03
