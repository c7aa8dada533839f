"""Expected quality of giving a prompt k samples, computed from its recorded samples.

A prompt has N recorded samples; k of them are drawn without replacement. With a verifier that
accepts or rejects each candidate and a reranker that returns the highest-scored candidate (ties
to the earlier draw), only four counts matter: N, a (accepted), ac (accepted and correct) and rc
(rejected and correct). Then, exactly, with h(k) = C(N − a, k) / C(N, k) the chance that none of
k draws is accepted:

    E[quality(k)] = (1 − h(k)) · ac / a + h(k) · rc / (N − a)

(given at least one accepted draw, the first accepted one is uniform over the accepted samples).
When the verifier agrees with correctness this is the unbiased pass@k, 1 − C(N − c, k)/C(N, k).
A sequential rule that draws rounds until a candidate is accepted, cumulative sizes
d_1 < d_2 < … ≤ cap, costs d_1 + Σ_j (d_j − d_{j−1}) · h(d_{j−1}) samples in expectation and
has the quality of best-of-d_last. Rules that read more than accept/reject (a vote) are
estimated by Monte Carlo over random draw orders (:func:`vote_quality_mc`), with a standard error.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MonteCarloEstimate",
    "VerifierCounts",
    "best_of_k_quality",
    "no_accept_probability",
    "pass_at_k",
    "schedule_expectation",
    "vote_quality_mc",
]


def no_accept_probability(n: int, accepted: int, k: int) -> float:
    """C(n − accepted, k) / C(n, k): the chance that k draws without replacement miss them all."""
    if k > n:
        raise ValueError(f"cannot draw {k} of {n} samples")
    if n - accepted < k:
        return 0.0
    # Product form (Chen et al., 2021) avoids huge binomials: Π_{i=n−a+1}^{n} (1 − k/i).
    return float(np.prod(1.0 - k / np.arange(n - accepted + 1, n + 1)))


def pass_at_k(n: int, correct: int, k: int) -> float:
    """The unbiased pass@k estimator 1 − C(n − c, k) / C(n, k)."""
    return 1.0 - no_accept_probability(n, correct, k)


@dataclass(frozen=True)
class VerifierCounts:
    """What a binary verifier's reranking of one prompt's recorded samples depends on."""

    n: int
    accepted: int
    accepted_correct: int
    rejected_correct: int

    @classmethod
    def from_samples(cls, accepted: Sequence[bool], correct: Sequence[bool]) -> VerifierCounts:
        """Counts from per-sample verifier verdicts and recorded correctness."""
        acc = np.asarray(accepted, bool)
        cor = np.asarray(correct, bool)
        return cls(len(acc), int(acc.sum()), int((acc & cor).sum()), int((~acc & cor).sum()))

    def quality_given(self, any_accepted: bool) -> float:
        """Chance the returned candidate is correct, given whether any draw was accepted."""
        if any_accepted:
            return self.accepted_correct / self.accepted if self.accepted else 0.0
        rejected = self.n - self.accepted
        return self.rejected_correct / rejected if rejected else 0.0


def best_of_k_quality(counts: VerifierCounts, k: int) -> float:
    """Expected correctness of the verifier's pick among k draws (exact)."""
    h = no_accept_probability(counts.n, counts.accepted, k)
    return (1.0 - h) * counts.quality_given(True) + h * counts.quality_given(False)


def schedule_expectation(counts: VerifierCounts, draws: Sequence[int]) -> tuple[float, float]:
    """(expected samples, expected quality) of drawing rounds up to the cumulative sizes
    ``draws`` and stopping after the first round holding an accepted candidate (exact)."""
    if not draws or any(b <= a for a, b in itertools.pairwise(draws)):
        raise ValueError(f"draws must be strictly increasing and non-empty: {draws!r}")
    samples = float(draws[0])
    for prev, cur in itertools.pairwise(draws):
        samples += (cur - prev) * no_accept_probability(counts.n, counts.accepted, prev)
    return samples, best_of_k_quality(counts, draws[-1])


@dataclass(frozen=True)
class MonteCarloEstimate:
    """A Monte Carlo mean, its standard error and the number of draws behind it."""

    mean: float
    standard_error: float
    draws: int


def vote_quality_mc(
    answers: Sequence[Hashable | None],
    correct: Sequence[bool],
    k: int,
    *,
    draws: int,
    rng: np.random.Generator,
) -> MonteCarloEstimate:
    """Expected correctness of self-consistency over k samples drawn without replacement.

    The most frequent extracted answer wins (ties to the answer seen first in draw order; a
    sample with no answer votes for nothing), and the first sample carrying it is returned; with
    no answer at all the first draw is returned, as the proxy's ``vote`` reranker does.
    """
    n = len(answers)
    if k > n:
        raise ValueError(f"cannot draw {k} of {n} samples")
    outcomes = np.empty(draws)
    for t in range(draws):
        order = rng.permutation(n)[:k]
        tally: dict[Hashable, list[int]] = {}
        for j in order:
            if answers[j] is not None:
                tally.setdefault(answers[j], []).append(int(j))
        if tally:
            best = max(tally.values(), key=len)  # max keeps the first of equal-sized groups
            outcomes[t] = correct[best[0]]
        else:
            outcomes[t] = correct[int(order[0])]
    se = float(outcomes.std(ddof=1) / np.sqrt(draws)) if draws > 1 else float("nan")
    return MonteCarloEstimate(float(outcomes.mean()), se, draws)
