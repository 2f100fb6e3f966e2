"""The runtime router: one score per request from its text and its shared embedding."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from router.artifact import U64, load_artifact, prompt_hashes
from router.models import StackedModel, make_inputs
from router.policy import Calibration, Policy

__all__ = ["Router", "default_artifact_path", "load_default"]

Floats = npt.NDArray[np.float64]


def default_artifact_path() -> Path:
    """The router shipped in the package (`router/artifacts/default.npz` + `.json`)."""
    return Path(str(resources.files("router") / "artifacts" / "default.npz"))


class Router:
    """Scores prompts: higher means more need for the large model.

    `text` is the last user message of the request, in full (not the window); `embedding`
    is the shared all-MiniLM-L6-v2 vector (384 floats) of `embedder.query_window(text)`,
    the one the gateway computes once per request for the cache, the router and RAG.
    """

    def __init__(
        self,
        model: StackedModel,
        calibration: Calibration,
        seen: U64 | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.calibration = calibration
        self.seen = np.sort(seen) if seen is not None else np.zeros(0, dtype=np.uint64)
        self.meta = meta or {}

    @classmethod
    def load(cls, path: str | Path) -> Router:
        model, calibration, seen, meta = load_artifact(path)
        return cls(model, calibration, seen, meta)

    def score(self, text: str, embedding: npt.ArrayLike) -> float:
        return self.model.score(make_inputs(text, embedding))

    def score_many(self, texts: Sequence[str], embeddings: npt.ArrayLike) -> Floats:
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.shape[0] != len(texts):
            raise ValueError("one embedding per text")
        if not texts:
            return np.zeros(0)
        return self.model.score_many([make_inputs(t, e) for t, e in zip(texts, emb, strict=True)])

    def policy(
        self,
        name: str,
        small_pool: str,
        large_pool: str,
        *,
        large_share: float | None = None,
        quality: float | None = None,
        allow_degrade: bool = True,
        prefer_small_near_budget: bool = False,
    ) -> Policy:
        """A policy whose threshold is calibrated on this router's calibration data."""
        return Policy(
            name,
            small_pool,
            large_pool,
            large_share=large_share,
            quality=quality,
            allow_degrade=allow_degrade,
            prefer_small_near_budget=prefer_small_near_budget,
            calibration=self.calibration,
        )

    def was_seen(self, prompts: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Which prompts this router was trained or calibrated on (keep them out of evals)."""
        if not self.seen.size:
            return np.zeros(len(prompts), dtype=bool)
        h = prompt_hashes(prompts)
        pos = np.searchsorted(self.seen, h).clip(max=self.seen.size - 1)
        return np.asarray(self.seen[pos] == h)


def load_default() -> Router:
    """The router shipped in the package."""
    return Router.load(default_artifact_path())


def single_threaded_blas() -> None:
    """Limit numpy's BLAS to one thread for the rest of the process.

    One request's kNN product is a BLAS gemv over the whole bank (~0.1 ms). With BLAS
    threads, each call waits until every helper thread has been scheduled, which costs
    milliseconds on a busy host. A latency-sensitive server calls this once at startup.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # stays in force (not used as a context)
