"""Evidence features of a cascade's cheap answers."""

from __future__ import annotations

import math

import pytest

from predictor_onnx.evidence import SampleEvidence, evidence_features, majority_answer


def _s(stage: int, text: str | None, answer: str | None) -> SampleEvidence:
    return SampleEvidence(stage, text, answer)


def test_agreeing_stages() -> None:
    samples = [_s(0, "so 18\n#### 18", "18"), _s(1, "A: 18", "18")]
    f = evidence_features(samples, {"gain": 0.25})
    assert f["agree"] == 1.0
    assert f["n_distinct"] == 1.0
    assert f["majority_share"] == 1.0
    assert f["no_answer_share"] == 0.0
    assert f["no_answer_first"] == 0.0
    assert f["log_chars_first"] == pytest.approx(math.log1p(len("so 18\n#### 18")))
    assert f["prior_gain"] == 0.25
    assert "logprob_first" not in f
    assert majority_answer(samples) == ("18", 0)


def test_disagreement_missing_answers_and_failures() -> None:
    samples = [_s(0, "no idea", None), _s(1, "A: 3", "3"), _s(2, None, None)]
    f = evidence_features(samples)
    assert f["agree"] == 0.0
    assert f["n_distinct"] == 1.0
    assert f["majority_share"] == pytest.approx(1 / 3)
    assert f["no_answer_share"] == pytest.approx(2 / 3)
    assert f["no_answer_first"] == 1.0
    assert majority_answer(samples) == ("3", 1)


def test_ties_go_to_the_earliest_stage_and_logprobs_are_read() -> None:
    samples = [SampleEvidence(0, "7", "7", logprob_mean=-0.3), _s(1, "9", "9")]
    assert majority_answer(samples) == ("7", 0)
    f = evidence_features(samples)
    assert f["agree"] == 0.0 and f["n_distinct"] == 2.0
    assert f["logprob_first"] == -0.3


def test_one_answer_alone_is_not_agreement() -> None:
    assert evidence_features([_s(0, "A: 5", "5")])["agree"] == 0.0
    assert majority_answer([_s(0, None, None)]) == (None, None)
