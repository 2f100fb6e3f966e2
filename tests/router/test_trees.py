from __future__ import annotations

import numpy as np
import pytest

from router.trees import TreeEnsemble


def test_numpy_trees_match_sklearn_probabilities() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 6))
    y = (x[:, 0] * x[:, 1] + 0.5 * rng.normal(size=2000) > 0).astype(int)
    model = HistGradientBoostingClassifier(
        max_iter=60, max_leaf_nodes=7, early_stopping=False, random_state=0
    ).fit(x, y)
    trees = TreeEnsemble.from_sklearn(model)
    assert trees.roots.size == 60 and trees.depth >= 2
    test = rng.normal(size=(500, 6))
    np.testing.assert_allclose(trees.proba(test), model.predict_proba(test)[:, 1], atol=1e-9)
    # one row at a time (the request path) gives the same numbers
    np.testing.assert_allclose(trees.proba(test[0]), model.predict_proba(test[:1])[:, 1])
    again = TreeEnsemble.from_arrays(trees.arrays())
    np.testing.assert_array_equal(again.logits(test), trees.logits(test))


def test_rejects_multiclass_models() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = np.arange(30, dtype=float).reshape(-1, 1)
    model = HistGradientBoostingClassifier(max_iter=3).fit(x, np.arange(30) % 3)
    with pytest.raises(ValueError):
        TreeEnsemble.from_sklearn(model)
