"""Small-vs-large routing: score a prompt, then let a calibrated policy pick the pool.

Runtime surface (numpy only; no torch or sklearn import):

    single_threaded_blas()                       # once, in a latency-sensitive server
    router = load_default()                      # the shipped artifact
    score = router.score(text, embedding)        # higher = more need for the large model
    # text: the last user message, in full; embedding: the shared MiniLM vector of
    # embedder.query_window(text) (the one the gateway computes once per request)
    auto = router.policy("auto", "small", "large", large_share=0.3)
    decision = auto.decide(score, prompt_tokens=812, max_tokens=256, small_ctx=8192)
    decision.pool, decision.reason

Training and evaluation live in `router.build`, `router.training` and `router.evaluate`
(imported by the `frugate router` CLI only).
"""

from router.data import OutcomeTable, read_outcomes, read_prompts, split_of
from router.metrics import RoutingCurve, apgr, cpt, routing_curve
from router.policy import (
    DEFAULT_POLICIES,
    Calibration,
    Decision,
    OnlineThreshold,
    Policy,
    policies_from_config,
)
from router.router import Router, default_artifact_path, load_default, single_threaded_blas

__all__ = [
    "DEFAULT_POLICIES",
    "Calibration",
    "Decision",
    "OnlineThreshold",
    "OutcomeTable",
    "Policy",
    "Router",
    "RoutingCurve",
    "apgr",
    "cpt",
    "default_artifact_path",
    "load_default",
    "policies_from_config",
    "read_outcomes",
    "read_prompts",
    "routing_curve",
    "single_threaded_blas",
    "split_of",
]
