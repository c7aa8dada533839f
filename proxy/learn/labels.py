"""Free labels: what a request's own evidence says, with no one asked.

* A sequential best-of-k request drew samples: with a verifier, each sample's accept or reject;
  otherwise each sample's agreement with the answer the request settled on. The share of good
  samples estimates the success probability of one sample (:class:`SampleSuccess`).
* An escalated cascade (and an explored pair) ran a cheap and an expensive arm: taking the
  expensive answer as the reference, the cheap arm succeeded iff its answer agrees. This labels
  the cheap arm only; the expensive arm's success is not observed by agreement.
"""

from __future__ import annotations

from proxy.learn.records import (
    CascadeEvidence,
    LabelKind,
    LabelRecord,
    SampleSuccess,
    SequentialEvidence,
)


def sequential_label(
    request_id: str, evidence: SequentialEvidence, *, unix_time_s: float
) -> LabelRecord | None:
    """The per-sample success of a sequential request; ``None`` when nothing was judged."""
    judged = [s.accepted for s in evidence.samples if s.accepted is not None]
    if judged:
        success = SampleSuccess(successes=sum(judged), samples=len(judged), judged_by="verifier")
    elif evidence.settled_answer is not None and evidence.samples:
        # A sample without an extractable answer did not produce the settled one: a failure.
        agree = sum(s.answer == evidence.settled_answer for s in evidence.samples)
        success = SampleSuccess(successes=agree, samples=len(evidence.samples), judged_by="vote")
    else:
        return None
    return LabelRecord(
        request_id=request_id,
        unix_time_s=unix_time_s,
        kind="free",
        source="sequential",
        sample_success=success,
    )


def agreement_label(
    request_id: str,
    *,
    cheap_answer: str | None,
    reference_answer: str | None,
    cheap_arm: str = "cheap",
    unix_time_s: float,
    kind: LabelKind = "free",
    source: str = "cascade:agreement",
) -> LabelRecord | None:
    """The cheap arm's reward by agreement with the reference (expensive) answer; ``None`` when
    the reference has no answer to agree with."""
    if reference_answer is None:
        return None
    agree = cheap_answer is not None and cheap_answer == reference_answer
    return LabelRecord(
        request_id=request_id,
        unix_time_s=unix_time_s,
        kind=kind,
        source=source,
        arm_rewards={cheap_arm: 1.0 if agree else 0.0},
    )


def cascade_label(
    request_id: str, evidence: CascadeEvidence, *, unix_time_s: float, cheap_arm: str = "cheap"
) -> LabelRecord | None:
    """An escalated cascade's free label: did the first stage agree with the last one?"""
    if not evidence.escalated or len(evidence.stages) < 2:
        return None
    return agreement_label(
        request_id,
        cheap_answer=evidence.stages[0].answer,
        reference_answer=evidence.stages[-1].answer,
        cheap_arm=cheap_arm,
        unix_time_s=unix_time_s,
    )
