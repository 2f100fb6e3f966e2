from __future__ import annotations

import numpy as np

from router.features import FEATURE_NAMES, focus_text, text_features, tokens
from router.models import terms

FEW_SHOT = (
    "Which gas do plants absorb?\nA) oxygen\nB) carbon dioxide\nAnswer:\nB\n\n"
    "What is 12 * 7?\nA) 84\nB) 74\nAnswer:\nA\n\n"
    "Which planet is known as the red planet?\nA) Venus\nB) Mars\nAnswer:"
)


def test_focus_is_the_last_question_of_a_few_shot_prompt() -> None:
    assert focus_text(FEW_SHOT).startswith("Which planet is known as the red planet?")


def test_short_trailing_instruction_stays_with_its_question() -> None:
    text = "Some context.\n\nIs the sky green and why would anyone think so?\n\nAnswer:"
    assert focus_text(text) == "Is the sky green and why would anyone think so?\n\nAnswer:"


def test_prompt_without_blank_lines_is_its_own_focus() -> None:
    assert focus_text("  hello world  ") == "hello world"


def test_features_have_fixed_names_and_react_to_markers() -> None:
    def feat(text: str) -> dict[str, float]:
        v = text_features(text)
        assert v.shape == (len(FEATURE_NAMES),)
        assert np.all(np.isfinite(v))
        return dict(zip(FEATURE_NAMES, v, strict=True))

    code = feat("```python\ndef f(x):\n    return {x: 1}\n```\nWhy does this fail?")
    plain = feat("Tell me a story about a cat")
    math = feat("Solve for x: 3x + 5 = 20, then compute x^2 / 4.")
    assert code["log_code"] > plain["log_code"] == 0
    assert math["log_math"] > plain["log_math"] == 0
    assert math["log_numbers"] > 0
    assert code["reason_words"] > 0
    assert feat("Quel est le théorème de Pythagore ?")["non_ascii_share"] > 0
    assert feat("日本の首都はどこですか")["cjk_share"] > 0.5
    assert feat(FEW_SHOT)["ends_with_answer"] == 1.0
    assert feat(FEW_SHOT)["log_blocks"] > 0
    assert feat("user: hi\nassistant: hello\nuser: more")["log_turns"] > 0
    assert feat("Which of these is NOT a prime?")["negation"] == 1.0


def test_terms_are_unigrams_and_bigrams_of_the_focus() -> None:
    assert tokens("It's 3.5 GHz!") == ["it's", "3.5", "ghz"]
    text = "intro words\n\nThe red planet is Mars, as most astronomers say"
    assert terms(text)[:3] == ["the", "red", "planet"]
    assert "intro" not in terms(text)
    assert terms("a b c") == ["a", "b", "c", "a b", "b c"]
