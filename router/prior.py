"""A hand-set prior for free-form prompts, which the outcome tables do not cover.

The training tables are benchmark prompts: multiple choice (MMLU, ARC, Winogrande), plus
MBPP's one-line coding tasks. On those, the learned model is measured. On free-form traffic
(chat, writing, formatting, open math and code questions) it extrapolates from the nearest
benchmark, and the nearest benchmark misleads: "Write a haiku" looks like MBPP's "Write a
function" (the largest gain), and calculus looks like MMLU math, where the recorded large
model's answers were mostly mis-parsed (small looks as good as large).

So for a prompt with no answer options (`is_free_form`), the router blends its model score
with `prior_gain`: a transparent estimate of the large model's gain from what the prompt
asks for. Multi-step math, proofs, puzzles, code to design or debug, and long multi-part
requests score high; greetings, thanks, short rewrites, translation, formatting and short
creative writing score low. It is a judgement, not a fit: it is kept small, it only touches
free-form prompts, and `frugate router train` reports held-out APGR with it in place.
"""

from __future__ import annotations

import math
import re

__all__ = ["FREE_FORM_WEIGHT", "is_free_form", "prior_gain"]

FREE_FORM_WEIGHT = 0.7  # share of the prior in a free-form prompt's score

_OPTION = re.compile(r"^\s*\(?[A-Ja-j][.):]\s", re.MULTILINE)
_WORD = re.compile(r"[a-z]+(?:\+\+|#)?", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MATH_SYMBOL = re.compile(r"[=^<>]|\\(?:frac|sqrt|sum|int)|\d\s*[-+*/]\s*\d|\b[xyzn]\s*[=<>]")
_CODE_MARK = re.compile(r"```|\bdef |\bclass |[{};]|\breturn\b|=>|->|::|\(\)")
_STEPS = re.compile(r"step[- ]by[- ]step|show (?:your|the) (?:work|reasoning)|explain why", re.I)

_CODE_WORDS = frozenset(
    """code function implement algorithm program python rust java javascript typescript c++ c#
    golang sql query regex api compile compiler debug bug refactor class struct recursion
    recursive complexity thread concurrency lock queue tree graph parser parse array""".split()  # noqa: SIM905
)
_MATH_WORDS = frozenset(
    """solve integral derivative equation equations probability prove proof theorem lemma
    calculate compute how many much percent percentage rate ratio sum product matrix
    polynomial prime primes factor inequality limit series expected average speed distance
    geometry triangle angle area volume""".split()  # noqa: SIM905
)
_REASON_WORDS = frozenset(
    """why explain reasoning justify derive analyse analyze compare design architecture
    tradeoffs trade-offs optimize optimise evaluate argue verify plan strategy""".split()  # noqa: SIM905
)
_LIGHT_WORDS = frozenset(
    """hi hello hey thanks thank translate translation rewrite rephrase paraphrase summarize
    summarise summary convert format capitalize caps uppercase lowercase synonym synonyms
    antonym typo typos spelling grammar haiku poem limerick joke slogan title name names email
    greeting tweet caption""".split()  # noqa: SIM905
)


def is_free_form(text: str) -> bool:
    """True unless the prompt lists answer options (the benchmark formats the model knows)."""
    return len(_OPTION.findall(text)) < 2


def prior_gain(text: str) -> float:
    """Expected large-minus-small quality from the request's wording, in [0.02, 0.5]."""
    words = [w.lower() for w in _WORD.findall(text)]
    n = len(words)
    code = sum(w in _CODE_WORDS for w in words) + len(_CODE_MARK.findall(text))
    maths = sum(w in _MATH_WORDS for w in words) + len(_MATH_SYMBOL.findall(text))
    reason = sum(w in _REASON_WORDS for w in words) + 2 * len(_STEPS.findall(text))
    light = sum(w in _LIGHT_WORDS for w in words)
    numbers = len(_NUMBER.findall(text))
    z = (
        -2.2
        + 0.35 * math.log1p(n)
        + 0.6 * math.log1p(code)
        + 0.6 * math.log1p(maths)
        + 0.35 * math.log1p(numbers)
        + 0.5 * math.log1p(reason)
        - 0.9 * math.log1p(light)
    )
    return 0.02 + 0.48 / (1.0 + math.exp(-z))
