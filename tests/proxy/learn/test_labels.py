"""Free labels from a request's own evidence."""

from __future__ import annotations

from proxy.learn.labels import cascade_label, sequential_label
from proxy.learn.records import (
    CascadeEvidence,
    SampleOutcome,
    SequentialEvidence,
    StageOutcome,
)


def test_sequential_with_a_verifier_counts_accepted_samples() -> None:
    evidence = SequentialEvidence(
        samples=[
            SampleOutcome(index=0, answer="4", accepted=True),
            SampleOutcome(index=1, answer="5", accepted=False),
            SampleOutcome(index=2, answer="4", accepted=True),
            SampleOutcome(index=3, answer=None),
        ],
        rounds=2,
        stopped_by="verifier",
        settled_answer="4",
    )
    label = sequential_label("r1", evidence, unix_time_s=1.0)
    assert label is not None and label.kind == "free" and label.sample_success is not None
    assert (label.sample_success.successes, label.sample_success.samples) == (2, 3)
    assert label.sample_success.judged_by == "verifier"


def test_sequential_without_a_verifier_uses_the_settled_answers_share() -> None:
    samples = [SampleOutcome(index=i, answer=a) for i, a in enumerate(["7", "7", "8", None])]
    evidence = SequentialEvidence(
        samples=samples, rounds=1, stopped_by="agreement", settled_answer="7"
    )
    label = sequential_label("r1", evidence, unix_time_s=1.0)
    assert label is not None and label.sample_success is not None
    assert label.sample_success.share == 0.5
    unsettled = evidence.model_copy(update={"settled_answer": None})
    assert sequential_label("r1", unsettled, unix_time_s=1.0) is None


def test_an_escalated_cascade_labels_the_cheap_arm_by_agreement() -> None:
    stages = [StageOutcome(name="cheap", answer="12"), StageOutcome(name="big", answer="12")]
    agree = cascade_label("r1", CascadeEvidence(stages=stages, escalated=True), unix_time_s=1.0)
    assert agree is not None and agree.arm_rewards == {"cheap": 1.0}
    stages[1] = StageOutcome(name="big", answer="13")
    differ = cascade_label("r1", CascadeEvidence(stages=stages, escalated=True), unix_time_s=1.0)
    assert differ is not None and differ.arm_rewards == {"cheap": 0.0}
    kept = cascade_label("r1", CascadeEvidence(stages=stages[:1], escalated=False), unix_time_s=1)
    assert kept is None
