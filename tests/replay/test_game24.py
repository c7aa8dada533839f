"""The Game of 24 checker: hand-made cases and every recorded Tree of Thoughts sample."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from recorded_data.multisample import load_multisample
from replay.game24 import ExpressionError, check_answer, evaluate, puzzle_numbers


@pytest.mark.parametrize(
    ("candidate", "numbers", "ok"),
    [
        ("Answer: (6 - 4) * (4 + 8) = 24", [4, 4, 6, 8], True),
        ("Steps:\n8 / 4 = 2 (left: 1 2 8)\nAnswer: (1 + 8 / 4) * 8 = 24", [1, 4, 8, 8], True),
        ("Answer: 8 / (3 - 8 / 3) = 24", [3, 3, 8, 8], True),  # exact rationals, not floats
        ("Answer: (6 - 4) * 5 = 24", [4, 5, 6, 10], False),  # a number left out
        ("Answer: (6 - 4) * 5 * (10 - 10) = 24", [4, 5, 6, 10], False),  # a number used twice
        ("Answer: (10 - 6) * (4 + 5) = 24", [4, 5, 6, 10], False),  # wrong value
        ("Answer: 4 * 6 / (10 - 10) = 24", [4, 6, 10, 10], False),  # division by zero
        ("Answer: None", [4, 5, 6, 10], False),
        ("Answer: __import__('os') = 24", [4, 5, 6, 10], False),
        ("(6 - 4) * (4 + 8) = 24\nAnswer: Not possible", [4, 4, 6, 8], False),  # last line only
    ],
)
def test_check_answer(candidate: str, numbers: list[int], ok: bool) -> None:
    assert check_answer(candidate, numbers) is ok


def test_evaluate_parses_precedence_and_rejects_garbage() -> None:
    assert evaluate("2 + 3 * 4")[0] == 14
    assert evaluate("(2 + 3) * 4") == (Fraction(20), [Fraction(2), Fraction(3), Fraction(4)])
    for bad in ("2 +", "(2 + 3", "2 3", "2 ** 3", "-2 + 26", ""):
        with pytest.raises(ExpressionError):
            evaluate(bad)


def test_puzzle_numbers_reads_the_last_input_line() -> None:
    assert puzzle_numbers("Input: 4 4 6 8\nSteps: ...\nInput: 4 5 6 10\n") == [4, 5, 6, 10]
    with pytest.raises(ExpressionError):
        puzzle_numbers("no puzzle here")


@pytest.mark.parametrize("suite", ["game24-gpt4-standard", "game24-gpt4-cot"])
def test_checker_agrees_with_every_recorded_verdict(data_dir: Path, suite: str) -> None:
    loaded = load_multisample(data_dir, suite)
    disagreements = [
        (p.prompt_id, j)
        for p in loaded.prompts
        for j, (text, correct) in enumerate(zip(p.texts, p.correct, strict=True))
        if check_answer(text, p.numbers or ()) != correct
    ]
    assert len(loaded.prompts) == 100
    assert sum(sum(p.correct) for p in loaded.prompts) > 0
    assert disagreements == []
