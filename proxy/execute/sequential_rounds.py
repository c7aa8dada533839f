"""Sequential best-of-k rounds: draw, look at the evidence, stop or draw more.

The orchestration only: drawing samples and scoring them are injected (the best-of-k executor
binds them to the upstream and the reward endpoint), so the rounds are tested without HTTP and
the offline benchmark can run the same :mod:`proxy.policies.stopping` rules.

Rules, in order, after every round:

* a failed sample is no evidence: it is not an answer, a vote or a score, but it counts toward
  the cap (so an upstream failing every sample cannot keep the request looping);
* ``verifier``: the new samples are scored by the reward endpoint; the first sample scoring
  ``≥ accept_score`` wins. If the endpoint fails, that failure is counted and the rule falls
  back to ``vote`` (the reranker of last resort) for the rest of the request;
* ``vote``: stop when the leader is settled (:class:`~proxy.policies.stopping.VoteStop`);
* otherwise the next round adds :func:`~proxy.policies.stopping.next_round_n` samples, until the
  cap: ``stopped_by`` is ``cap`` (``n_max``) or ``budget`` (the prompt's prior cap, lower than
  ``n_max``, from λ or a budget).

A cancelled request (client disconnect) cancels the round in flight: nothing here catches it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from proxy.execute.rerank import RerankResult
from proxy.observe.tracing import NO_STEPS, Steps
from proxy.policies.stopping import StopRule, VerifierStop, VoteStop, next_round_n

# ``draw(n)`` returns the texts of n new samples, ``None`` for each that failed.
Draw = Callable[[int], Awaitable[Sequence[str | None]]]
# ``score(texts)`` scores candidates with the verifier (a reward reranker); never raises.
Score = Callable[[Sequence[str]], Awaitable[RerankResult]]
Extract = Callable[[str], str | None]
StoppedBy = Literal["verifier", "vote", "cap", "budget"]

# The vote rule a failing verifier falls back to.
FALLBACK_VOTE = VoteStop(confidence=0.9)


@dataclass
class RoundsResult:
    """Everything the rounds drew and why they stopped.

    ``texts``/``answers``/``scores`` list the successful samples in draw order; ``accepted`` is
    the index of the sample a verifier accepted (``None`` when none was).
    """

    texts: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    rounds: int = 0
    attempted: int = 0
    stopped_by: StoppedBy = "cap"
    accepted: int | None = None
    verifier_failures: int = 0
    scoring: list[RerankResult] = field(default_factory=list)

    @property
    def samples_drawn(self) -> int:
        """Samples that arrived (what the request is billed for, and what budgets count)."""
        return len(self.texts)

    @property
    def samples_failed(self) -> int:
        """Samples requested that did not arrive."""
        return self.attempted - len(self.texts)


async def run_rounds(
    *,
    first_n: int,
    step_n: int | Literal["double"],
    cap: int,
    n_max: int,
    stop: StopRule,
    draw: Draw,
    extract: Extract,
    score: Score | None = None,
    on_round: Callable[[RoundsResult], None] | None = None,
    steps: Steps = NO_STEPS,
    span_attributes: Mapping[str, Any] | None = None,
) -> RoundsResult:
    """Draw rounds until ``stop`` says the answer is settled or ``cap`` samples were requested.

    ``cap ≤ n_max``; when a cap below ``n_max`` ends the rounds, ``stopped_by`` is ``budget``.
    ``score`` is required for a :class:`VerifierStop`. ``on_round`` sees the state after every
    round (metrics, keep-alives). Each round is a ``steps`` span (``span_attributes`` plus its
    index and n; the last one says what stopped the rounds).
    """
    span_attributes = span_attributes or {}
    if isinstance(stop, VerifierStop) and score is None:
        raise ValueError("a verifier stop rule needs a score function")
    cap = max(1, min(cap, n_max))
    result = RoundsResult()
    rule: StopRule = stop
    n = max(1, min(first_n, cap))
    while n > 0:
        attributes = {**span_attributes, "adaptive.round": result.rounds + 1, "adaptive.n": n}
        with steps.step("sequential round", attributes) as span:
            new = await draw(n)
            result.attempted += n
            result.rounds += 1
            arrived = [t for t in new if t is not None]
            result.texts.extend(arrived)
            result.answers.extend(extract(t) for t in arrived)
            new_scores: list[float | None] = [None] * len(arrived)
            if isinstance(rule, VerifierStop) and arrived and score is not None:
                ranking = await score(arrived)
                result.scoring.append(ranking)
                if ranking.failed or len(ranking.scores) != len(arrived):
                    result.verifier_failures += 1
                    rule = FALLBACK_VOTE
                else:
                    new_scores = list(ranking.scores)
            result.scores.extend(new_scores)
            if on_round is not None:
                on_round(result)
            if rule.should_stop(result.answers, result.scores):
                result.stopped_by = "verifier" if isinstance(rule, VerifierStop) else "vote"
                if isinstance(rule, VerifierStop):
                    result.accepted = rule.accepted_index(result.scores)
                span.set_attribute("adaptive.stopped_by", result.stopped_by)
                return result
            n = next_round_n(result.attempted, step_n, cap)
            if n <= 0:
                span.set_attribute("adaptive.stopped_by", "budget" if cap < n_max else "cap")
    result.stopped_by = "budget" if cap < n_max else "cap"
    return result
