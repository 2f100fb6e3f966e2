"""Training: fit the candidate components, select by cross-validation, ship an ensemble.

Steps (`train_router`):
1. Keep the "train" part of every outcome table (see `router.data`); "calib" and "test" are
   never fitted on.
2. 5-fold CV on "train" for each candidate (kNN for several k, topic prior, lexical, dense);
   out-of-fold APGR per table. kNN's k is chosen by mean CV APGR over the tables.
3. Ensemble weights: a small grid over {0, 0.5, 1, 2} per component, scored by mean
   out-of-fold APGR over the tables (z-scored component scores).
4. Refit the chosen components on all of "train"; score "calib" for policy calibration.

sklearn is imported here only; request-time code never needs it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from router.data import OutcomeTable, cv_fold_of
from router.features import text_features
from router.metrics import apgr
from router.models import (
    DenseScorer,
    Ensemble,
    Inputs,
    KNNScorer,
    LexicalScorer,
    Scorer,
    TopicScorer,
    terms,
)

__all__ = ["Prepared", "TrainConfig", "TrainResult", "prepare", "train_router"]

Floats = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
Step = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    n_folds: int = 5
    knn_ks: tuple[int, ...] = (50, 100, 200)
    knn_dims: int = 128
    topic_c: float = 1.0
    topic_shrink: float = 20.0  # pseudo-count pulling small topics' mean gain to the global one
    lexical_c: float = 0.3
    lexical_min_df: int = 2
    lexical_max_terms: int = 40_000
    dense_c: float = 1.0
    weight_grid: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)


@dataclass
class Prepared:
    """Features of a set of labelled prompts, ready for fitting and scoring."""

    embeddings: F32
    features: Floats
    terms: list[list[str]]
    small: Floats
    large: Floats
    topics: list[str]
    table_ids: npt.NDArray[np.intp]  # which input table each row came from

    def __len__(self) -> int:
        return len(self.terms)

    @property
    def gain(self) -> Floats:
        return self.large - self.small

    def take(self, mask: npt.NDArray[np.bool_]) -> Prepared:
        ix = np.flatnonzero(mask)
        return Prepared(
            embeddings=self.embeddings[ix],
            features=self.features[ix],
            terms=[self.terms[i] for i in ix],
            small=self.small[ix],
            large=self.large[ix],
            topics=[self.topics[i] for i in ix],
            table_ids=self.table_ids[ix],
        )

    def inputs(self) -> list[Inputs]:
        return [
            Inputs(embedding=e, features=f, terms=t)
            for e, f, t in zip(self.embeddings, self.features, self.terms, strict=True)
        ]


def prepare(tables: Sequence[OutcomeTable], embeddings: Sequence[F32]) -> Prepared:
    prompts = [p for t in tables for p in t.prompts]
    return Prepared(
        embeddings=np.vstack(embeddings).astype(np.float32),
        features=np.stack([text_features(p) for p in prompts]),
        terms=[terms(p) for p in prompts],
        small=np.concatenate([t.small for t in tables]),
        large=np.concatenate([t.large for t in tables]),
        topics=[s for t in tables for s in (t.sources or [""] * len(t))],
        table_ids=np.concatenate([np.full(len(t), i, dtype=np.intp) for i, t in enumerate(tables)]),
    )


# --- component fitting -------------------------------------------------------------------


def _binary_heads(a: Any, small: Floats, large: Floats, c: float) -> tuple[Floats, Floats]:
    """Two logistic regressions, P(small ok) and P(large ok); soft labels become weights."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    coefs, intercepts = [], []
    for q in (small, large):
        if np.all((q == 0) | (q == 1)):
            x, y, w = a, q.astype(int), None
        else:  # quality in [0, 1]: one positive row weighted q, one negative weighted 1 - q
            x = sparse.vstack([a, a]) if sparse.issparse(a) else np.vstack([a, a])
            y = np.r_[np.ones(len(q), int), np.zeros(len(q), int)]
            w = np.r_[q, 1 - q]
        if len(np.unique(y if w is None else y[w > 0])) < 2:
            coefs.append(np.zeros(a.shape[1]))
            intercepts.append(0.0)
            continue
        m = LogisticRegression(C=c, max_iter=3000).fit(x, y, sample_weight=w)
        coefs.append(m.coef_[0])
        intercepts.append(float(m.intercept_[0]))
    return np.vstack(coefs), np.asarray(intercepts)


def fit_knn(d: Prepared, k: int, dims: int) -> KNNScorer:
    center = d.embeddings.mean(axis=0)
    x = (d.embeddings - center).astype(np.float64)
    # PCA from the covariance's eigenvectors (dim x dim): much cheaper than an SVD of x.
    _, vecs = np.linalg.eigh(x.T @ x)
    proj = np.ascontiguousarray(vecs[:, ::-1][:, :dims], dtype=np.float32)
    z = (d.embeddings - center) @ proj
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    # Round through float16 now so training-time scores equal the shipped model's.
    bank = z.astype(np.float16).astype(np.float32)
    return KNNScorer(proj=proj, center=center, bank=bank, gain=d.gain.astype(np.float32), k=k)


def fit_topic(d: Prepared, c: float, shrink: float) -> TopicScorer:
    from sklearn.linear_model import LogisticRegression

    names, topic_id = np.unique(np.asarray(d.topics), return_inverse=True)
    gain = d.gain
    overall = float(gain.mean())
    count = np.bincount(topic_id, minlength=len(names))
    total = np.bincount(topic_id, weights=gain, minlength=len(names))
    topic_gain = (total + shrink * overall) / (count + shrink)
    if len(names) < 2:
        dim = d.embeddings.shape[1]
        return TopicScorer(
            coef=np.zeros((1, dim), np.float32),
            intercept=np.zeros(1, np.float32),
            topic_gain=topic_gain.astype(np.float32),
        )
    m = LogisticRegression(C=c, max_iter=2000).fit(d.embeddings, topic_id)
    coef = np.asarray(m.coef_, dtype=np.float32)
    intercept = np.asarray(m.intercept_, dtype=np.float32)
    if len(names) == 2:  # sklearn keeps one row for binary problems: rebuild both logits
        coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.r_[0.0, intercept[0]].astype(np.float32)
    return TopicScorer(coef=coef, intercept=intercept, topic_gain=topic_gain.astype(np.float32))


def fit_lexical(d: Prepared, c: float, min_df: int, max_terms: int) -> LexicalScorer:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(
        analyzer=lambda ts: ts,  # `terms` already produced the uni/bigrams
        min_df=min_df,
        max_features=max_terms,
        sublinear_tf=True,
        dtype=np.float64,
    )
    a = vec.fit_transform(d.terms)
    coef, intercept = _binary_heads(a, d.small, d.large, c)
    vocab = {t: int(i) for t, i in vec.vocabulary_.items()}
    return LexicalScorer(
        vocab=vocab,
        idf=np.asarray(vec.idf_, dtype=np.float32),
        coef=coef.astype(np.float32),
        intercept=intercept.astype(np.float32),
    )


def fit_dense(d: Prepared, c: float) -> DenseScorer:
    mean = d.features.mean(axis=0)
    scale = d.features.std(axis=0)
    scale[scale < 1e-9] = 1.0
    coef, intercept = _binary_heads((d.features - mean) / scale, d.small, d.large, c)
    return DenseScorer(mean=mean, scale=scale, coef=coef, intercept=intercept)


def _candidates(cfg: TrainConfig) -> dict[str, Callable[[Prepared], Scorer]]:
    def knn(k: int) -> Callable[[Prepared], Scorer]:
        return lambda d: fit_knn(d, k, cfg.knn_dims)

    out: dict[str, Callable[[Prepared], Scorer]] = {f"knn{k}": knn(k) for k in cfg.knn_ks}

    def topic(d: Prepared) -> Scorer:
        return fit_topic(d, cfg.topic_c, cfg.topic_shrink)

    def lexical(d: Prepared) -> Scorer:
        return fit_lexical(d, cfg.lexical_c, cfg.lexical_min_df, cfg.lexical_max_terms)

    def dense(d: Prepared) -> Scorer:
        return fit_dense(d, cfg.dense_c)

    out.update(topic=topic, lexical=lexical, dense=dense)
    return out


# --- selection ---------------------------------------------------------------------------


def per_table_apgr(scores: Floats, d: Prepared) -> list[float]:
    return [
        apgr(scores[d.table_ids == i], d.small[d.table_ids == i], d.large[d.table_ids == i])
        for i in range(int(d.table_ids.max()) + 1)
    ]


@dataclass
class TrainResult:
    model: Ensemble
    config: TrainConfig
    cv: dict[str, list[float]]  # candidate (and "ensemble") -> out-of-fold APGR per table
    weights: dict[str, float]
    oof: dict[str, Floats] = field(repr=False, default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "cv_apgr": {k: [round(v, 4) for v in vs] for k, vs in self.cv.items()},
            "weights": self.weights,
        }


def _zscore(x: Floats) -> tuple[Floats, float, float]:
    m, s = float(x.mean()), float(x.std())
    s = s if s > 1e-12 else 1.0
    return (x - m) / s, m, s


def train_router(
    d: Prepared,
    folds: npt.NDArray[np.intp],
    cfg: TrainConfig | None = None,
    step: Step | None = None,
) -> TrainResult:
    """Cross-validate the candidates on `d`, pick k and the ensemble weights, refit on all."""
    from threadpoolctl import threadpool_limits

    # One BLAS thread: on a small shared machine, threaded OpenBLAS spins and runs ~10x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        return _train_router(d, folds, cfg or TrainConfig(), step)


def _train_router(
    d: Prepared, folds: npt.NDArray[np.intp], cfg: TrainConfig, step: Step | None
) -> TrainResult:
    say = step or (lambda _msg: None)
    fitters = _candidates(cfg)
    oof = {name: np.zeros(len(d)) for name in fitters}
    for f in range(cfg.n_folds):
        tr, te = folds != f, folds == f
        if not te.any():
            continue
        train_part, test_inputs = d.take(tr), d.take(te).inputs()
        for name, fit in fitters.items():
            say(f"fold {f + 1}/{cfg.n_folds}: {name}")
            oof[name][te] = fit(train_part).score_many(test_inputs)
    cv = {name: per_table_apgr(s, d) for name, s in oof.items()}

    best_k = max(cfg.knn_ks, key=lambda k: float(np.mean(cv[f"knn{k}"])))
    chosen = [f"knn{best_k}", "topic", "lexical", "dense"]
    z = {name: _zscore(oof[name]) for name in chosen}
    best: tuple[float, tuple[float, ...]] = (-np.inf, ())
    for w in itertools.product(cfg.weight_grid, repeat=len(chosen)):
        if not any(w):
            continue
        total = sum(wi * z[n][0] for wi, n in zip(w, chosen, strict=True))
        score = float(np.mean(per_table_apgr(np.asarray(total), d)))
        # On ties, prefer the smaller total weight (fewer / lighter components).
        if score > best[0] + 1e-9 or (abs(score - best[0]) <= 1e-9 and sum(w) < sum(best[1])):
            best = (score, w)
    weights = dict(zip(chosen, best[1], strict=True))
    kept = [n for n in chosen if weights[n] > 0]
    cv["ensemble"] = per_table_apgr(np.asarray(sum(weights[n] * z[n][0] for n in kept)), d)

    comps: list[Scorer] = []
    for name in kept:
        say(f"final fit: {name}")
        comps.append(fitters[name](d))
    model = Ensemble(
        names=kept,
        components=comps,
        weights=np.array([weights[n] for n in kept]),
        mean=np.array([z[n][1] for n in kept]),
        std=np.array([z[n][2] for n in kept]),
    )
    return TrainResult(model=model, config=cfg, cv=cv, weights=weights, oof=oof)


def cv_folds(prompts: Sequence[str], n_folds: int) -> npt.NDArray[np.intp]:
    return np.array([cv_fold_of(p, n_folds) for p in prompts], dtype=np.intp)
