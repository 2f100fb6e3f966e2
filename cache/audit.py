"""How clean are a pair file's labels where a cache would be surest?

A semantic tier can only be as precise as the labels it is judged by. This sorts pairs
into classes by how little the two texts differ (identical up to case and spaces,
punctuation only, the same words reordered, one word changed, ...) and reports the share
labelled duplicate in each, with a 95% Wilson interval. If even the "same text up to
case" class is far from all-duplicate, no verifier can be judged ≥ 99% precise on
semantic hits by these labels.

`needed_precision` turns a target into the labelled precision semantic hits must reach
on top of the exact tier, so the two can be compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher

from cache.data import Pair, normal_text

__all__ = ["LabelClass", "audit_labels", "exact_tier", "needed_precision", "wilson"]

CLASSES = (
    "identical up to case and spaces",
    "punctuation only",
    "same words reordered",
    "one word changed",
    "two words changed",
    "the rest",
)
_PUNCT = re.compile(r"[^\w\s]")


@dataclass(frozen=True, slots=True)
class LabelClass:
    name: str
    pairs: int
    duplicates: int

    @property
    def share(self) -> float:
        return self.duplicates / self.pairs if self.pairs else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.duplicates, self.pairs)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _words(text: str) -> list[str]:
    return _PUNCT.sub(" ", text.lower()).split()


def _changed_words(a: list[str], b: list[str]) -> int:
    ops = SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def classify(a: str, b: str) -> str:
    if "".join(a.lower().split()) == "".join(b.lower().split()):
        return CLASSES[0]
    wa, wb = _words(a), _words(b)
    if wa == wb:
        return CLASSES[1]
    if sorted(wa) == sorted(wb):
        return CLASSES[2]
    changed = _changed_words(wa, wb)
    return CLASSES[3] if changed == 1 else CLASSES[4] if changed == 2 else CLASSES[5]


def audit_labels(pairs: Iterable[Pair]) -> list[LabelClass]:
    counts = {name: [0, 0] for name in CLASSES}
    for p in pairs:
        c = counts[classify(p.a, p.b)]
        c[0] += 1
        c[1] += p.duplicate
    return [LabelClass(name, n, d) for name, (n, d) in counts.items()]


def needed_precision(
    exact_hits: int, exact_caught: int, duplicates: int, precision: float, recall: float
) -> float:
    """The labelled precision semantic hits need so that, added to an exact tier that
    is always right (`exact_hits`, catching `exact_caught` duplicate pairs), the cache
    reaches `precision` overall at `recall`. Assumes every right semantic hit catches a
    duplicate pair (the best case). > 1 means no precision is enough."""
    right = max(0.0, recall * duplicates - exact_caught)  # right semantic hits needed
    if right == 0:
        return 0.0
    # (exact + right) / (exact + right / r) >= precision, solved for r:
    room = (exact_hits + right) / precision - exact_hits
    return right / room if room > 0 else math.inf


def exact_tier(pairs: list[Pair]) -> tuple[int, int]:
    """What the exact tier of `frugate cache eval` serves on these pairs, without a
    model: (hits, duplicate pairs caught). A query hits when its text, up to
    whitespace, is some entry's; such a hit is always right."""
    entries = {normal_text(p.a) for p in pairs}
    hits = [p for p in pairs if normal_text(p.b) in entries]
    return len(hits), sum(p.duplicate for p in hits)
