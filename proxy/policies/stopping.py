"""Sequential best-of-k: how many samples to draw first, how many to add, and when to stop.

Pure functions and frozen rules (no I/O) shared by the ``best_of_k`` policy's ``sequential:``
mode and by the offline benchmark that replays it on recorded samples, so both run the same rule.

A request draws a first round of :func:`first_round_n` samples concurrently; after each round the
policy's :data:`StopRule` looks at everything drawn so far (``answers``: each sample's extracted
final answer, ``None`` when the sample failed or no answer was found; ``scores``: each sample's
verifier score, ``None`` when not scored) and either stops or asks for :func:`next_round_n` more,
until the cap.

The vote rule (:class:`VoteStop`) is adaptive-consistency's Beta stopping criterion (Aggarwal et
al., EMNLP 2023, "Let's Sample Step by Step"): with ``v1`` votes for the leading answer and ``v2``
for the runner-up, put a uniform Beta(1, 1) prior on the leading answer's share ``x`` of the two
and stop when the posterior ``P(x > 1/2 | v1, v2)`` reaches ``confidence``. Why this rule:

* it asks the question the reranker answers — "would more samples change the majority?" — rather
  than "is the answer right", which votes alone cannot tell;
* it has no tuning beyond ``confidence`` and is exact and cheap for integer counts:
  ``P(x > 1/2) = 1 − I_{1/2}(v1 + 1, v2 + 1) = P(Binomial(v1 + v2 + 1, 1/2) ≤ v1)``;
* comparing the top two answers is what the authors found works as well as the full Dirichlet
  posterior over all answers while being closed-form (the third and later answers matter little
  once the top two are separated).

Samples without an answer are not votes: a failed or unparsable sample is no evidence either way.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from proxy.policies.allocation import choose_n


def _check_lengths(answers: Sequence[str | None], scores: Sequence[float | None]) -> None:
    if scores and len(scores) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(scores)} scores")


def majority_posterior(leading_votes: int, runner_up_votes: int) -> float:
    """``P(share of the leading answer > 1/2)`` under a Beta(1, 1) prior on the top two answers.

    Equal to ``P(Binomial(v1 + v2 + 1, 1/2) ≤ v1)`` for integer counts (the regularised
    incomplete beta function at 1/2 with integer parameters is a binomial tail).
    """
    if leading_votes < 0 or runner_up_votes < 0:
        raise ValueError("vote counts must be >= 0")
    trials = leading_votes + runner_up_votes + 1
    favourable = sum(math.comb(trials, k) for k in range(leading_votes + 1))
    return favourable / (1 << trials)


def top_two_votes(answers: Sequence[str | None]) -> tuple[str | None, int, int]:
    """The leading answer, its vote count and the runner-up's (``None`` answers never vote).

    Ties between answers go to the one seen first, as the ``vote`` reranker breaks them.
    """
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0, 0
    ranked = sorted(counts.items(), key=lambda item: -item[1])  # stable: first seen wins ties
    leader, v1 = ranked[0]
    v2 = ranked[1][1] if len(ranked) > 1 else 0
    return leader, v1, v2


@dataclass(frozen=True)
class VerifierStop:
    """Stop at the first sample whose verifier score is at least ``accept_score``."""

    accept_score: float

    kind: ClassVar[str] = "verifier"

    def should_stop(self, answers: Sequence[str | None], scores: Sequence[float | None]) -> bool:
        """True once any drawn sample scored ``≥ accept_score`` (unscored samples never do)."""
        _check_lengths(answers, scores)
        return any(s is not None and s >= self.accept_score for s in scores)

    def accepted_index(self, scores: Sequence[float | None]) -> int | None:
        """Index of the first accepted sample (the one to return), or ``None``."""
        for i, score in enumerate(scores):
            if score is not None and score >= self.accept_score:
                return i
        return None


@dataclass(frozen=True)
class VoteStop:
    """Stop when the leading answer is the majority with posterior ``≥ confidence``.

    ``min_samples`` answered samples are needed before the rule may stop (one answer alone is
    never settled: with ``confidence`` ≥ 0.75 the posterior rule needs two agreeing votes anyway).
    """

    confidence: float
    min_samples: int = 2

    kind: ClassVar[str] = "vote"

    def __post_init__(self) -> None:
        if not 0.5 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0.5, 1), got {self.confidence!r}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {self.min_samples!r}")

    def posterior(self, answers: Sequence[str | None]) -> float:
        """The posterior that the current leader is the majority (0 when nothing answered)."""
        leader, v1, v2 = top_two_votes(answers)
        if leader is None:
            return 0.0
        return majority_posterior(v1, v2)

    def should_stop(self, answers: Sequence[str | None], scores: Sequence[float | None]) -> bool:
        """True once ``min_samples`` samples answered and the leader's posterior is settled."""
        _check_lengths(answers, scores)
        answered = sum(a is not None for a in answers)
        if answered < self.min_samples:
            return False
        return self.posterior(answers) >= self.confidence


StopRule = VerifierStop | VoteStop


def next_round_n(drawn: int, step_n: int | Literal["double"], cap: int) -> int:
    """How many samples the next round adds: ``step_n`` (or as many as drawn, ``"double"``).

    Never past ``cap``; 0 once ``drawn ≥ cap``.
    """
    if drawn < 0 or cap < 0:
        raise ValueError("drawn and cap must be >= 0")
    if drawn >= cap:
        return 0
    if step_n == "double":
        step = max(drawn, 1)
    else:
        if step_n < 1:
            raise ValueError(f"step_n must be >= 1 or 'double', got {step_n!r}")
        step = step_n
    return min(step, cap - drawn)


def first_round_n(
    p_one: float, lambda_per_sample: float, n_min: int, n_max: int, efficiency: float
) -> int:
    """Size of round one: the ``n`` in ``[n_min, n_max]`` maximising ``E[R(n)] − λ · n``.

    ``E[R(n)] = p + efficiency · (1 − (1 − p)ⁿ − p)``, the ``best_of_k`` policy's model
    (:func:`proxy.policies.allocation.choose_n` with one cost unit per sample), so an easy prompt
    starts with few samples and a hopeless one (small ``p``) is not given a large round.
    """
    p = min(max(p_one, 0.0), 1.0)  # a predictor output may overshoot [0, 1] by rounding
    return choose_n(
        p,
        n_min=n_min,
        n_max=n_max,
        lambda_=lambda_per_sample,
        cost_per_sample=1.0,
        efficiency=efficiency,
    )
