"""The serving side of the escalation model: loading, verification, parity with training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from predictor_onnx.escalation import (
    CASCADES,
    build_escalation,
    cascade_examples,
    read_prior_jsonl,
    train_escalation,
)
from predictor_onnx.escalation_format import shipped_escalation_dir
from predictor_onnx.evidence import SampleEvidence
from proxy.execute.rerank_text import extract_answer
from proxy.policies.escalation import (
    AgreementRule,
    EscalationModel,
    assess,
    resolve_model_path,
)
from recorded_data.records import load_gsm8k

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"


def test_agreement_rule() -> None:
    rule = AgreementRule()
    assert rule.gain({"agree": 1.0}) == 0.0
    assert rule.gain({"agree": 0.0}) == 1.0
    assert rule.gain({}) == 1.0


def test_exported_model_matches_training_to_the_last_digit(data_dir: Path, tmp_path: Path) -> None:
    records = load_gsm8k(data_dir)
    prior = read_prior_jsonl([RESULTS / "gsm8k-procedures.records.jsonl"])
    spec = CASCADES["gpt3-175b"]
    path, _ = build_escalation(records, spec, tmp_path, prior=prior)
    examples = cascade_examples(records, spec, prior=prior, prior_outputs=spec.prior_outputs)
    trained = train_escalation(
        examples.x, examples.cheap_reward, examples.expensive_reward, examples.feature_names
    )
    served = EscalationModel.load(path)
    assert served.features == examples.feature_names
    expected = trained.gain(examples.x)
    got = np.asarray(
        [served.gain(dict(zip(examples.feature_names, row, strict=True))) for row in examples.x]
    )
    assert np.max(np.abs(got - expected)) < 1e-12


def test_missing_features_take_the_training_mean(tmp_path: Path, data_dir: Path) -> None:
    path, _ = build_escalation(
        load_gsm8k(data_dir)[:200], CASCADES["mixtral-gpt4"], tmp_path, prior=None
    )
    model = EscalationModel.load(path)
    at_mean = dict(zip(model.features, model.mean, strict=True))
    assert model.gain({}) == pytest.approx(model.gain(at_mean))


def test_a_tampered_model_is_refused_with_its_name(tmp_path: Path, data_dir: Path) -> None:
    path, _ = build_escalation(
        load_gsm8k(data_dir)[:100], CASCADES["mixtral-gpt4"], tmp_path, prior=None
    )
    doc = json.loads(path.read_text())
    doc["model"]["heads"]["cheap_correct"]["bias"] = 3.0
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"mixtral-gpt4\.json: sha256 .* does not match"):
        EscalationModel.load(path)
    with pytest.raises(ValueError, match="predictor train --escalation"):
        EscalationModel.load(tmp_path / "absent.json")


def test_the_shipped_models_load_and_read_their_prior() -> None:
    for name in CASCADES:
        model = EscalationModel.load(resolve_model_path(name))
        assert model.name == name
        assert any(f.startswith("prior_") for f in model.features)
        disagree = model.gain({"agree": 0.0, "n_distinct": 2.0, "majority_share": 0.5})
        agree = model.gain({"agree": 1.0, "n_distinct": 1.0, "majority_share": 1.0})
        assert disagree > agree
    assert resolve_model_path("mixtral-gpt4").parent == shipped_escalation_dir()


def _sample(stage: int, text: str | None) -> SampleEvidence:
    return SampleEvidence(stage, text, None if text is None else extract_answer(text))


def test_assess_agreeing_cheap_answers_do_not_escalate() -> None:
    samples = [_sample(0, "so #### 42"), _sample(1, "A: 42")]
    result = assess(samples, {}, AgreementRule(), threshold=0.5, lambda_=None, delta_cost_usd=0.01)
    assert not result.escalate
    assert (result.answer, result.answered_by, result.gain) == ("42", 0, 0.0)
    assert result.features["agree"] == 1.0


def test_assess_disagreement_escalates_and_lambda_prices_the_gain() -> None:
    samples = [_sample(0, "#### 41"), _sample(1, "#### 42")]
    rule = AgreementRule()
    assert assess(samples, {}, rule, threshold=0.5, lambda_=None, delta_cost_usd=1.0).escalate
    # gain 1 against λ · Δcost: escalate only while the extra cost is priced below 1.
    assert assess(samples, {}, rule, threshold=None, lambda_=50.0, delta_cost_usd=0.01).escalate
    cheap = assess(samples, {}, rule, threshold=None, lambda_=200.0, delta_cost_usd=0.01)
    assert not cheap.escalate and cheap.answered_by == 0


def test_assess_with_every_cheap_stage_failed_escalates() -> None:
    result = assess(
        [_sample(0, None), _sample(1, None)],
        {},
        AgreementRule(),
        threshold=0.5,
        lambda_=None,
        delta_cost_usd=0.01,
    )
    assert result.escalate and result.reason == "no_cheap_answer"
    assert result.answered_by is None


def test_assess_without_an_extractable_answer_keeps_the_first_arrived_sample() -> None:
    result = assess(
        [_sample(0, None), _sample(1, "I cannot tell.")],
        {},
        AgreementRule(),
        threshold=2.0,
        lambda_=None,
        delta_cost_usd=0.0,
    )
    assert not result.escalate and result.answered_by == 1


def test_assess_feeds_the_prior_to_the_model() -> None:
    model = EscalationModel.load(resolve_model_path("mixtral-gpt4"))
    samples = [_sample(0, "#### 41"), _sample(1, "#### 42")]
    low = assess(samples, {"gain": 0.0}, model, threshold=0.0, lambda_=None, delta_cost_usd=0)
    high = assess(samples, {"gain": 0.6}, model, threshold=0.0, lambda_=None, delta_cost_usd=0)
    assert high.features["prior_gain"] == 0.6
    assert high.gain is not None and low.gain is not None and high.gain > low.gain
