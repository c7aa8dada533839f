"""Evidence features of a cascade's cheap answers: what the escalation model reads.

One definition, used to train the escalation model on recorded answers
(:mod:`predictor_onnx.escalation`) and by the proxy to featurise live answers (its cascade
policy), so that training and serving see identical numbers. Pure functions, no I/O.

Each cheap stage contributes one or more samples (:class:`SampleEvidence`: the completion text or
``None`` when the call failed, its extracted final answer, optionally the mean token logprob).
Features (all floats; names are the keys of the exported model's ``features`` list):

* ``agree`` — 1 when at least two samples answered and every sample's answer is the same;
* ``n_distinct`` — number of distinct answers found;
* ``majority_share`` — share of all samples that voted for the leading answer;
* ``no_answer_share`` — share of samples with no answer (failed or unparsable);
* ``no_answer_first`` — 1 when the first stage's first sample has no answer;
* ``log_chars_first`` — ``log1p`` of the first stage's first completion length in characters;
* ``logprob_first`` — mean token logprob of that completion (only when the upstream returned
  logprobs; the recorded data has none, so shipped models do not use it);
* ``prior_<output>`` — the prompt predictor's outputs (``prior_gain``, ``prior_p_weak`` …).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

EVIDENCE_FEATURES: tuple[str, ...] = (
    "agree",
    "n_distinct",
    "majority_share",
    "no_answer_share",
    "no_answer_first",
    "log_chars_first",
)
OPTIONAL_FEATURES: tuple[str, ...] = ("logprob_first",)
PRIOR_PREFIX = "prior_"


@dataclass(frozen=True)
class SampleEvidence:
    """One cheap sample: which stage drew it, its text (``None``: failed), its final answer."""

    stage: int
    text: str | None
    answer: str | None
    logprob_mean: float | None = None


def majority_answer(samples: Sequence[SampleEvidence]) -> tuple[str | None, int | None]:
    """The leading answer over all cheap samples and the index of the first sample giving it.

    Ties go to the answer seen first (earlier stages first), as the ``vote`` reranker breaks
    them; ``(None, None)`` when no sample answered. This is the answer a cascade returns when it
    does not escalate.
    """
    counts = Counter(s.answer for s in samples if s.answer is not None)
    if not counts:
        return None, None
    leader = max(counts, key=lambda a: counts[a])  # first maximal key in insertion order
    first = next(i for i, s in enumerate(samples) if s.answer == leader)
    return leader, first


def evidence_features(
    samples: Sequence[SampleEvidence], prior: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Every evidence feature this module defines (see the module docstring)."""
    total = len(samples)
    answers = [s.answer for s in samples if s.answer is not None]
    counts = Counter(answers)
    first = samples[0] if samples else None
    features = {
        "agree": float(len(answers) >= 2 and len(answers) == total and len(counts) == 1),
        "n_distinct": float(len(counts)),
        "majority_share": max(counts.values()) / total if counts else 0.0,
        "no_answer_share": (total - len(answers)) / total if total else 1.0,
        "no_answer_first": float(first is None or first.answer is None),
        "log_chars_first": math.log1p(len(first.text)) if first and first.text else 0.0,
    }
    if first is not None and first.logprob_mean is not None:
        features["logprob_first"] = float(first.logprob_mean)
    for name, value in (prior or {}).items():
        features[PRIOR_PREFIX + name] = float(value)
    return features
