"""A cascade's cheap stages as evidence: their calls, replies, tokens and cost.

What :mod:`proxy.execute.cascade` gathers before it decides whether the last stage runs, and what a
budget controller replays of that choice.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.learn.records import CascadeEvidence, StageOutcome
from proxy.policies.allocation import DecisionProblem
from proxy.policies.cascade import CascadePolicy, CascadeStage
from proxy.policies.escalation import Assessment


@dataclass
class StageRun:
    """One cheap stage's calls: replies (``None``: a failed sample), tokens and cost."""

    stage: CascadeStage
    replies: list[dict[str, Any] | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class CheapResult:
    """The cheap stages, their samples as evidence, and the assessment."""

    runs: list[StageRun]
    replies: list[dict[str, Any] | None]  # one per sample, aligned with ``assessment.samples``
    assessment: Assessment
    escalation_cost_usd: float  # expected cost of the last stage

    def problem(self) -> DecisionProblem:
        """The escalation as a two-arm choice (what a budget controller replays to find λ):
        escalating is worth ``gain`` for its cost, not escalating nothing."""
        a = self.assessment
        gain = 1.0 if a.gain is None else a.gain
        n = sum(len(r.replies) for r in self.runs)
        cost = self.cost_usd
        return DecisionProblem(
            (0.0, gain), (cost, cost + self.escalation_cost_usd), (n, n + 1), (False, True)
        )

    @property
    def cost_usd(self) -> float:
        """What the cheap stages cost."""
        return sum(r.cost_usd for r in self.runs)

    @property
    def drawn(self) -> int:
        """Samples the cheap stages drew (failed calls drew none)."""
        return sum(len(r.replies) - len(r.errors) for r in self.runs)

    @property
    def agreement(self) -> bool | None:
        """Whether every cheap sample's extracted answer is the same one (``None`` with fewer
        than two answers: nothing to compare)."""
        answers = [s.answer for s in self.assessment.samples if s.answer is not None]
        return len(set(answers)) == 1 if len(answers) >= 2 else None

    @property
    def usage(self) -> tuple[int, int]:
        """Prompt and completion tokens of the cheap stages."""
        return sum(r.prompt_tokens for r in self.runs), sum(r.completion_tokens for r in self.runs)


def mean_logprob(choice: Mapping[str, Any]) -> float | None:
    """Mean token logprob of a choice that carries OpenAI ``logprobs.content``."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    values = [t.get("logprob") for t in content if isinstance(t, dict)]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else None


def first_choice(reply: Mapping[str, Any] | None) -> dict[str, Any] | None:
    choices = reply.get("choices") if reply is not None else None
    first = choices[0] if isinstance(choices, list) and choices else None
    return first if isinstance(first, dict) else None


def cascade_evidence(
    policy: CascadePolicy, cheap: CheapResult, *, escalated: bool, last_answer: str | None
) -> CascadeEvidence:
    """What a cascade showed, for the outcome log: each cheap stage's answer (its samples'
    majority, ties to the earliest), the last stage's when it ran, whether the cheap samples'
    answers agreed (``None`` with fewer than two answers), escalated or not."""
    samples = cheap.assessment.samples
    stages = []
    for index, run in enumerate(cheap.runs):
        answers = [s.answer for s in samples if s.stage == index and s.answer is not None]
        counts = collections.Counter(answers)
        answer = max(answers, key=lambda a: counts[a]) if answers else None  # first of the ties
        stages.append(
            StageOutcome(name=run.stage.label, upstream=run.stage.upstream, answer=answer)
        )
    if escalated:
        final = policy.stages[-1]
        stages.append(StageOutcome(name=final.label, upstream=final.upstream, answer=last_answer))
    return CascadeEvidence(stages=stages, agreement=cheap.agreement, escalated=escalated)
