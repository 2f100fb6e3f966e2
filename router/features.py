"""Cheap text features of a prompt: shape, code/math markers, turns, script, wording.

Everything here is a few regex passes over the text (tens of microseconds), so it fits in the
router's < 1 ms budget next to the shared embedding.

Many benchmark prompts are few-shot: solved examples, then the real question last. The shared
embedding only sees the first 256 tokens (the examples), so the features look at the *focus*:
the last blank-line separated block(s) of the prompt, which hold the question being asked.
"""

from __future__ import annotations

import math
import re

import numpy as np
import numpy.typing as npt

__all__ = ["FEATURE_NAMES", "focus_text", "text_features", "tokens"]

Floats = npt.NDArray[np.float64]

_BLOCKS = re.compile(r"\n\s*\n")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+(?:[.,]\d+)*", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_OPTION = re.compile(r"^\s*\(?[A-Ja-j][.):]\s", re.MULTILINE)
_MATH = re.compile(r"[=+*/^<>$]|\\(?:frac|sqrt|sum|int)")
_CODE = re.compile(r"```|[{};]|==|!=|->|\(\)")
_TURN = re.compile(r"^\s*(?:user|assistant|human|system|q|a)\s*:", re.IGNORECASE | re.MULTILINE)
# Word lists are matched against the lower-cased tokens (a set lookup beats a regex here).
_MATH_WORDS = frozenset(
    ["sqrt", "log", "sin", "cos", "tan", "integral", "derivative", "equation", "solve"]
)
_CODE_WORDS = frozenset(
    ["def", "return", "function", "class", "import", "print", "python", "java", "code", "sql"]
)
_NEGATION_WORDS = frozenset(["not", "except", "least", "false", "incorrect", "never"])
_REASON_WORDS = frozenset(
    "why how explain prove derive calculate compute estimate determine analyze analyse".split()  # noqa: SIM905
)
_WRITE_WORDS = frozenset(
    "write implement create generate compose draft design translate summarize summarise".split()  # noqa: SIM905
)
_DIGIT = re.compile(r"\d")
_UPPER = re.compile(r"[A-Z]")
_CJK = re.compile(r"[\u3040-\u9fff\uac00-\ud7af]")
_FEW_SHOT_MIN_CHARS = 40  # a trailing block shorter than this is an instruction, not the question

FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_lines",
    "log_blocks",
    "focus_log_chars",
    "focus_log_words",
    "focus_share",
    "mean_word_len",
    "long_word_share",
    "digit_share",
    "log_numbers",
    "upper_share",
    "non_ascii_share",
    "cjk_share",
    "log_options",
    "mean_option_words",
    "log_math",
    "log_code",
    "log_turns",
    "log_questions",
    "negation",
    "reason_words",
    "write_words",
    "ends_with_answer",
)


def focus_text(text: str) -> str:
    """The question being asked: the last substantial blank-line separated block.

    A short trailing block (an instruction such as "Answer:") stays attached to the block
    before it. A prompt without blank lines is its own focus.
    """
    blocks = [b for b in _BLOCKS.split(text.strip()) if b.strip()]
    if len(blocks) <= 1:
        return text.strip()
    focus = blocks[-1]
    i = len(blocks) - 1
    while len(focus) < _FEW_SHOT_MIN_CHARS and i > 0:
        i -= 1
        focus = blocks[i] + "\n\n" + focus
    return focus


def tokens(text: str) -> list[str]:
    """Lower-cased word and number tokens (the lexical model's vocabulary units)."""
    return [t.lower() for t in _WORD.findall(text)]


def _log(x: float) -> float:
    return math.log1p(x)


def _count(words: list[str], vocabulary: frozenset[str]) -> int:
    return sum(w in vocabulary for w in words)


def text_features(text: str) -> Floats:
    """A fixed-length vector of cheap features, in the order of `FEATURE_NAMES`."""
    focus = focus_text(text)
    n_chars = len(text)
    f_chars = max(len(focus), 1)
    words = _WORD.findall(focus)
    lower = [w.lower() for w in words]
    n_words = len(words)
    lengths = [len(w) for w in words if not w[0].isdigit()]
    mean_word = sum(lengths) / len(lengths) if lengths else 0.0
    long_share = sum(n >= 10 for n in lengths) / len(lengths) if lengths else 0.0
    digits = len(_DIGIT.findall(focus))
    upper = len(_UPPER.findall(focus))
    non_ascii = 0 if focus.isascii() else len(focus.encode("utf-8")) - len(focus)
    cjk = len(_CJK.findall(focus)) if non_ascii else 0
    option_lines = [m.end() for m in _OPTION.finditer(focus)]
    option_words = 0.0
    if option_lines:
        lines = [focus[e:].split("\n", 1)[0] for e in option_lines]
        option_words = sum(len(ln.split()) for ln in lines) / len(lines)
    tail = focus.rstrip()[-20:].lower()
    vec = [
        _log(n_chars),
        _log(len(text.split())),
        _log(text.count("\n")),
        _log(len(_BLOCKS.findall(text))),
        _log(f_chars),
        _log(n_words),
        f_chars / max(n_chars, 1),
        mean_word,
        long_share,
        digits / f_chars,
        _log(len(_NUMBER.findall(focus))),
        upper / f_chars,
        non_ascii / f_chars,
        cjk / f_chars,
        _log(len(option_lines)),
        _log(option_words),
        _log(len(_MATH.findall(focus)) + _count(lower, _MATH_WORDS)),
        _log(len(_CODE.findall(focus)) + _count(lower, _CODE_WORDS)),
        _log(len(_TURN.findall(text))),
        _log(focus.count("?")),
        float(_count(lower, _NEGATION_WORDS) > 0),
        _log(_count(lower, _REASON_WORDS)),
        _log(_count(lower, _WRITE_WORDS)),
        float(tail.endswith("answer:")),
    ]
    return np.asarray(vec, dtype=np.float64)
