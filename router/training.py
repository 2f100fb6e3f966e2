"""Training: fit the feature blocks, stack boosted trees on their out-of-fold outputs.

Steps (`train_router`), all on the "train" part of the outcome tables ("calib" and "test" are
never fitted on, see `router.data`):

1. Model selection by nested 5-fold CV. For each outer fold: the blocks' out-of-fold outputs
   on the other four folds (an inner CV over those folds) train the tree heads; blocks fitted
   on all four folds feed the held-out fold. Out-of-fold APGR per table for every head
   config, and for each block's own score (kNN gain, topic gain, lexical, dense) as reference.
2. The head config with the best mean APGR over the tables wins.
3. Final model: the blocks' 5-fold out-of-fold outputs on all of "train" train the heads;
   the blocks are refitted on all of "train".

sklearn is imported here only; request-time code never needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from router.data import OutcomeTable, cv_fold_of
from router.features import text_features
from router.metrics import apgr
from router.models import (
    Block,
    DenseBlock,
    Inputs,
    LexicalBlock,
    NeighbourBlock,
    StackedModel,
    TextBlock,
    TopicBlock,
    terms,
)
from router.prior import FREE_FORM_WEIGHT, is_free_form, prior_gain
from router.trees import TreeEnsemble

__all__ = [
    "HeadConfig",
    "Prepared",
    "TrainConfig",
    "TrainResult",
    "cv_folds",
    "fit_blocks",
    "prepare",
    "train_router",
]

Floats = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
Step = Callable[[str], None]


@dataclass(frozen=True)
class HeadConfig:
    """One boosted-trees setting (sklearn HistGradientBoostingClassifier)."""

    learning_rate: float = 0.02
    max_iter: int = 400
    max_leaf_nodes: int = 5
    min_samples_leaf: int = 80

    @property
    def name(self) -> str:
        return (
            f"trees lr={self.learning_rate} n={self.max_iter} "
            f"leaves={self.max_leaf_nodes} min={self.min_samples_leaf}"
        )


@dataclass(frozen=True)
class TrainConfig:
    n_folds: int = 5
    knn_ks: tuple[int, ...] = (30, 100, 400)
    knn_dims: int = 128
    topic_c: float = 1.0
    topic_shrink: float = 20.0  # pseudo-count pulling small topics' means to the global one
    lexical_c: float = 0.3
    lexical_min_df: int = 2
    lexical_max_terms: int = 40_000
    dense_c: float = 1.0
    prior_weight: float = FREE_FORM_WEIGHT
    heads: tuple[HeadConfig, ...] = (
        HeadConfig(0.02, 400, 5, 80),
        HeadConfig(0.05, 200, 5, 80),
        HeadConfig(0.03, 300, 7, 40),
    )


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
    prior: Floats  # router.prior.prior_gain of each prompt
    free_form: npt.NDArray[np.bool_]

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
            prior=self.prior[ix],
            free_form=self.free_form[ix],
        )

    def inputs(self) -> list[Inputs]:
        return [
            Inputs(embedding=e, features=f, terms=t, prior=float(p), free_form=bool(ff))
            for e, f, t, p, ff in zip(
                self.embeddings, self.features, self.terms, self.prior, self.free_form, strict=True
            )
        ]


def prepare(tables: Sequence[OutcomeTable], embeddings: Sequence[F32]) -> Prepared:
    """`embeddings[i]` holds the vectors of `query_window(prompt)` for table i's prompts."""
    prompts = [p for t in tables for p in t.prompts]
    return Prepared(
        embeddings=np.vstack(embeddings).astype(np.float32),
        features=np.stack([text_features(p) for p in prompts]),
        terms=[terms(p) for p in prompts],
        small=np.concatenate([t.small for t in tables]),
        large=np.concatenate([t.large for t in tables]),
        topics=[s for t in tables for s in (t.sources or [""] * len(t))],
        table_ids=np.concatenate([np.full(len(t), i, dtype=np.intp) for i, t in enumerate(tables)]),
        prior=np.array([prior_gain(p) if is_free_form(p) else 0.0 for p in prompts]),
        free_form=np.array([is_free_form(p) for p in prompts], dtype=bool),
    )


# --- level one: the feature blocks -------------------------------------------------------


def _as_binary(x: Any, q: Floats) -> tuple[Any, npt.NDArray[np.int_], Floats | None]:
    """0/1 labels as they are; a quality in [0, 1] as a positive row weighted q plus a
    negative row weighted 1 - q."""
    from scipy import sparse

    if np.all((q == 0) | (q == 1)):
        return x, q.astype(int), None
    stacked = sparse.vstack([x, x]) if sparse.issparse(x) else np.vstack([x, x])
    return stacked, np.r_[np.ones(len(q), int), np.zeros(len(q), int)], np.r_[q, 1 - q]


def _logistic_heads(a: Any, small: Floats, large: Floats, c: float) -> tuple[Floats, Floats]:
    """Two logistic regressions, P(small ok) and P(large ok)."""
    from sklearn.linear_model import LogisticRegression

    coefs, intercepts = [], []
    for q in (small, large):
        x, y, w = _as_binary(a, q)
        if len(np.unique(y if w is None else y[w > 0])) < 2:
            coefs.append(np.zeros(a.shape[1]))
            intercepts.append(0.0)
            continue
        m = LogisticRegression(C=c, max_iter=3000).fit(x, y, sample_weight=w)
        coefs.append(m.coef_[0])
        intercepts.append(float(m.intercept_[0]))
    return np.vstack(coefs), np.asarray(intercepts)


def fit_knn(d: Prepared, ks: tuple[int, ...], dims: int) -> NeighbourBlock:
    center = d.embeddings.mean(axis=0)
    x = (d.embeddings - center).astype(np.float64)
    # PCA from the covariance's eigenvectors (dim x dim): much cheaper than an SVD of x.
    _, vecs = np.linalg.eigh(x.T @ x)
    proj = np.ascontiguousarray(vecs[:, ::-1][:, :dims], dtype=np.float32)
    z = (d.embeddings - center) @ proj
    z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    # Round through float16 now so training-time outputs equal the shipped model's.
    def f16(v: npt.NDArray[Any]) -> F32:
        return v.astype(np.float16).astype(np.float32)

    return NeighbourBlock(
        proj=proj, center=center, bank=f16(z), small=f16(d.small), large=f16(d.large), ks=ks
    )


def fit_topic(d: Prepared, c: float, shrink: float) -> TopicBlock:
    from sklearn.linear_model import LogisticRegression

    names, topic_id = np.unique(np.asarray(d.topics), return_inverse=True)
    count = np.bincount(topic_id, minlength=len(names))

    def shrunk_mean(q: Floats) -> F32:
        total = np.bincount(topic_id, weights=q, minlength=len(names))
        return ((total + shrink * float(q.mean())) / (count + shrink)).astype(np.float32)

    dim = d.embeddings.shape[1]
    if len(names) < 2:
        coef, intercept = np.zeros((1, dim), np.float32), np.zeros(1, np.float32)
    else:
        m = LogisticRegression(C=c, max_iter=2000).fit(d.embeddings, topic_id)
        coef = np.asarray(m.coef_, dtype=np.float32)
        intercept = np.asarray(m.intercept_, dtype=np.float32)
        if len(names) == 2:  # sklearn keeps one row for binary problems: rebuild both logits
            coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
            intercept = np.r_[0.0, intercept[0]].astype(np.float32)
    return TopicBlock(
        coef=coef,
        intercept=intercept,
        topic_small=shrunk_mean(d.small),
        topic_large=shrunk_mean(d.large),
    )


def fit_lexical(d: Prepared, c: float, min_df: int, max_terms: int) -> LexicalBlock:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(
        analyzer=lambda ts: ts,  # `terms` already produced the uni/bigrams
        min_df=min_df,
        max_features=max_terms,
        sublinear_tf=True,
        dtype=np.float64,
    )
    a = vec.fit_transform(d.terms)
    coef, intercept = _logistic_heads(a, d.small, d.large, c)
    return LexicalBlock(
        vocab={t: int(i) for t, i in vec.vocabulary_.items()},
        idf=np.asarray(vec.idf_, dtype=np.float32),
        coef=coef.astype(np.float32),
        intercept=intercept.astype(np.float32),
    )


def fit_dense(d: Prepared, c: float) -> DenseBlock:
    mean = d.features.mean(axis=0)
    scale = d.features.std(axis=0)
    scale[scale < 1e-9] = 1.0
    coef, intercept = _logistic_heads((d.features - mean) / scale, d.small, d.large, c)
    return DenseBlock(mean=mean, scale=scale, coef=coef, intercept=intercept)


BLOCK_NAMES = ("knn", "topic", "lexical", "dense", "text")


def fit_blocks(d: Prepared, cfg: TrainConfig) -> list[Block]:
    """Every level-one block, fitted on `d` (order: `BLOCK_NAMES`)."""
    return [
        fit_knn(d, cfg.knn_ks, cfg.knn_dims),
        fit_topic(d, cfg.topic_c, cfg.topic_shrink),
        fit_lexical(d, cfg.lexical_c, cfg.lexical_min_df, cfg.lexical_max_terms),
        fit_dense(d, cfg.dense_c),
        TextBlock(),
    ]


def _level_one(blocks: Sequence[Block], xs: list[Inputs]) -> Floats:
    x = np.hstack([b.transform(xs) for b in blocks])
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _level_one_oof(d: Prepared, folds: npt.NDArray[np.intp], cfg: TrainConfig) -> Floats:
    """Each row's block outputs from blocks fitted without its fold."""
    out: Floats | None = None
    for f in np.unique(folds):
        te = folds == f
        x = _level_one(fit_blocks(d.take(~te), cfg), d.take(te).inputs())
        if out is None:
            out = np.zeros((len(d), x.shape[1]))
        out[te] = x
    assert out is not None
    return out


# --- level two: the tree heads -----------------------------------------------------------


def _fit_tree(x: Floats, q: Floats, h: HeadConfig) -> TreeEnsemble:
    from sklearn.ensemble import HistGradientBoostingClassifier

    xx, y, w = _as_binary(x, q)
    model = HistGradientBoostingClassifier(
        learning_rate=h.learning_rate,
        max_iter=h.max_iter,
        max_leaf_nodes=h.max_leaf_nodes,
        min_samples_leaf=h.min_samples_leaf,
        early_stopping=False,  # "auto" would switch it on above 10k rows, with a random split
        random_state=0,
    )
    return TreeEnsemble.from_sklearn(model.fit(xx, y, sample_weight=w))


def fit_heads(x: Floats, small: Floats, large: Floats, h: HeadConfig) -> tuple[TreeEnsemble, ...]:
    return _fit_tree(x, small, h), _fit_tree(x, large, h)


def _head_score(heads: tuple[TreeEnsemble, ...], x: Floats) -> Floats:
    return heads[1].proba(x) - heads[0].proba(x)


# --- selection ---------------------------------------------------------------------------


def per_table_apgr(scores: Floats, d: Prepared) -> list[float]:
    return [
        apgr(scores[d.table_ids == i], d.small[d.table_ids == i], d.large[d.table_ids == i])
        for i in range(int(d.table_ids.max()) + 1)
    ]


def _block_scores(x: Floats, columns: list[str], k: int) -> dict[str, Floats]:
    """Each block's own score (for the CV table): its estimate of large - small."""

    def col(name: str) -> Floats:
        return x[:, columns.index(name)]

    def sig(v: Floats) -> Floats:
        return np.asarray(1.0 / (1.0 + np.exp(-v)))

    return {
        f"knn{k} gain": col(f"knn{k}_gain"),
        "topic gain": col("topic_gain"),
        "lexical": sig(col("lexical_large")) - sig(col("lexical_small")),
        "dense": sig(col("dense_large")) - sig(col("dense_small")),
    }


@dataclass
class TrainResult:
    model: StackedModel
    config: TrainConfig
    cv: dict[str, list[float]]  # candidate -> out-of-fold APGR per table
    head: HeadConfig
    oof: dict[str, Floats] = field(repr=False, default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "cv_apgr": {k: [round(v, 4) for v in vs] for k, vs in self.cv.items()},
            "head": asdict(self.head),
            "prior": {"weight": self.model.prior_weight, "scale": self.model.prior_scale},
        }


def train_router(
    d: Prepared,
    folds: npt.NDArray[np.intp],
    cfg: TrainConfig | None = None,
    step: Step | None = None,
) -> TrainResult:
    """Nested CV to pick the head, then the final fit on all of `d`."""
    from threadpoolctl import threadpool_limits

    # One BLAS thread: on a small shared machine, threaded OpenBLAS spins and runs ~10x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        return _train_router(d, folds, cfg or TrainConfig(), step)


def _train_router(
    d: Prepared, folds: npt.NDArray[np.intp], cfg: TrainConfig, step: Step | None
) -> TrainResult:
    say = step or (lambda _msg: None)
    if len(cfg.heads) == 0:
        raise ValueError("at least one head config is needed")
    ref_k = min(cfg.knn_ks, key=lambda k: abs(k - 100))  # the reference kNN row of the CV table
    oof: dict[str, Floats] = {h.name: np.zeros(len(d)) for h in cfg.heads}
    columns: list[str] = []
    fold_ids = [f for f in range(cfg.n_folds) if (folds == f).any()]
    for f in fold_ids:
        te = folds == f
        train_part = d.take(~te)
        say(f"outer fold {f + 1}/{cfg.n_folds}: blocks (inner CV)")
        inner = _level_one_oof(train_part, folds[~te], cfg)
        blocks = fit_blocks(train_part, cfg)
        outer = _level_one(blocks, d.take(te).inputs())
        columns = [c for b in blocks for c in b.columns()]
        for name, s in _block_scores(outer, columns, ref_k).items():
            oof.setdefault(name, np.zeros(len(d)))[te] = s
        for h in cfg.heads:
            say(f"outer fold {f + 1}/{cfg.n_folds}: {h.name}")
            oof[h.name][te] = _head_score(
                fit_heads(inner, train_part.small, train_part.large, h), outer
            )
    best = max(cfg.heads, key=lambda h: float(np.mean(per_table_apgr(oof[h.name], d))))
    # The prior's scale: the model's mean out-of-fold score over the free-form training
    # prompts, divided by the prior's mean there (1 when there are none).
    free, ref = d.free_form, oof[best.name]
    scale = float(ref[free].mean() / d.prior[free].mean()) if free.any() else 1.0
    w = cfg.prior_weight
    oof["stacked"] = np.where(free, (1 - w) * ref + w * scale * d.prior, ref)
    cv = {name: per_table_apgr(s, d) for name, s in oof.items()}

    say("final fit: blocks out-of-fold on all of train")
    x = _level_one_oof(d, folds, cfg)
    say(f"final fit: {best.name}")
    small_head, large_head = fit_heads(x, d.small, d.large, best)
    say("final fit: blocks on all of train")
    model = StackedModel(
        names=list(BLOCK_NAMES),
        blocks=fit_blocks(d, cfg),
        small_head=small_head,
        large_head=large_head,
        prior_weight=w,
        prior_scale=scale,
    )
    return TrainResult(model=model, config=cfg, cv=cv, head=best, oof=oof)


def cv_folds(prompts: Sequence[str], n_folds: int) -> npt.NDArray[np.intp]:
    return np.array([cv_fold_of(p, n_folds) for p in prompts], dtype=np.intp)
