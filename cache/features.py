"""Pair features for the hit verifier: how a cached question differs from a new one.

Cheap string features (no model) chosen to generalise beyond Quora: lexical and
character overlap, length ratio, and mismatches that flip the answer even when the
embeddings agree (numbers, negation, named entities, question word, unmatched words).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FEATURE_NAMES", "pair_features", "pair_features_many"]

FEATURE_NAMES = (
    "cosine",
    "token_jaccard",
    "content_jaccard",
    "char3_dice",
    "seq_ratio",
    "len_ratio",
    "token_diff",
    "unmatched_min",
    "unmatched_max",
    "number_mismatch",
    "number_count",
    "negation_mismatch",
    "entity_mismatch",
    "entity_count",
    "qword_mismatch",
    "first_word_same",
    "last_word_same",
    "order_swap",
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITAL = re.compile(r"\b[A-Z][A-Za-z0-9]*\b|\b[A-Za-z]*[A-Z][A-Za-z]*[A-Z][A-Za-z]*\b")
_NEGATIONS = _words(
    "not no never none nothing nobody nowhere neither nor without cannot "
    "isn't aren't wasn't weren't don't doesn't didn't can't couldn't won't wouldn't "
    "shouldn't hasn't haven't hadn't mustn't n't"
)
_QWORDS = _words(
    "what which who whom whose when where why how can could should would will "
    "is are was were do does did has have may might"
)
_STOP = _words(
    "a an the of to in on for at by with from and or but is are was were be been being "
    "do does did i you he she it we they me my your his her its our their this that these "
    "those there here what which who whom whose when where why how can could should would "
    "will shall may might must as if so than then about into over under up down out off "
    "any some all most more much many very just also get got one ones s t"
)


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _char3(text: str) -> set[str]:
    s = " ".join(_tokens(text))
    return {s[i : i + 3] for i in range(max(len(s) - 2, 1))}


def _negations(tokens: list[str]) -> int:
    return sum(1 for t in tokens if t in _NEGATIONS or t.endswith("n't"))


def _entities(text: str) -> set[str]:
    # Capitalised words except each sentence's first word (which is capitalised anyway).
    found = set()
    for sentence in re.split(r"(?<=[.?!])\s+", text.strip()):
        for i, m in enumerate(_CAPITAL.finditer(sentence)):
            if i == 0 and m.start() == 0:
                continue
            if m.group().lower() not in _STOP and m.group() != "I":
                found.add(m.group().lower())
    return found


def _order_swap(tq: list[str], tc: list[str]) -> float:
    """Share of shared content-word pairs that appear in opposite order
    ("ethane to ethene" vs "ethene to ethane": same words, different question)."""
    pos_c: dict[str, int] = {}
    for i, t in enumerate(tc):
        if t not in _STOP:
            pos_c.setdefault(t, i)
    seen: set[str] = set()
    order = []
    for t in tq:
        if t in pos_c and t not in seen:
            seen.add(t)
            order.append(pos_c[t])
    n = len(order)
    if n < 2:
        return 0.0
    inversions = sum(1 for i in range(n) for j in range(i + 1, n) if order[i] > order[j])
    return inversions / (n * (n - 1) / 2)


def _qword(tokens: list[str]) -> str:
    return next((t for t in tokens if t in _QWORDS), "")


def pair_features(query: str, cached: str, cosine: float) -> npt.NDArray[np.float32]:
    """Features of (new question, cached question) given their embedding cosine."""
    tq, tc = _tokens(query), _tokens(cached)
    sq, sc = set(tq), set(tc)
    cq, cc = sq - _STOP, sc - _STOP
    nq, nc = set(_NUMBER.findall(query)), set(_NUMBER.findall(cached))
    eq, ec = _entities(query), _entities(cached)
    c3q, c3c = _char3(query), _char3(cached)
    lq, lc = len(query.strip()), len(cached.strip())
    unmatched_q, unmatched_c = len(cq - cc), len(cc - cq)
    return np.array(
        [
            cosine,
            _jaccard(sq, sc),
            _jaccard(cq, cc),
            2 * len(c3q & c3c) / max(len(c3q) + len(c3c), 1),
            SequenceMatcher(None, tq, tc, autojunk=False).ratio(),
            min(lq, lc) / max(lq, lc, 1),
            abs(len(tq) - len(tc)),
            min(unmatched_q, unmatched_c),
            max(unmatched_q, unmatched_c),
            float(nq != nc),
            len(nq ^ nc),
            float((_negations(tq) > 0) != (_negations(tc) > 0)),
            len(eq ^ ec) / max(len(eq | ec), 1),
            len(eq ^ ec),
            float(_qword(tq) != _qword(tc)),
            float(bool(tq) and bool(tc) and tq[0] == tc[0]),
            float(bool(tq) and bool(tc) and tq[-1] == tc[-1]),
            _order_swap(tq, tc),
        ],
        dtype=np.float32,
    )


def pair_features_many(
    queries: Sequence[str], cached: Sequence[str], cosines: Sequence[float] | npt.NDArray[Any]
) -> npt.NDArray[np.float32]:
    if not queries:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    return np.stack(
        [pair_features(q, c, float(s)) for q, c, s in zip(queries, cached, cosines, strict=True)]
    )
