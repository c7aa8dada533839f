"""Expected quality of k samples: closed forms against brute force over every draw order."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest

from bench.multisample.expected import (
    VerifierCounts,
    best_of_k_quality,
    pass_at_k,
    schedule_expectation,
    vote_quality_mc,
)


def _brute_pass_at_k(correct: Sequence[bool], k: int) -> float:
    subsets = list(itertools.combinations(range(len(correct)), k))
    return sum(any(correct[j] for j in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 4, 7])
def test_pass_at_k_equals_the_mean_over_every_subset(n: int) -> None:
    for c in range(n + 1):
        correct = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(correct, k), abs=1e-12)
    assert pass_at_k(100, 1, 100) == pytest.approx(1.0)
    assert pass_at_k(100, 0, 50) == 0.0


def _pick(order: Sequence[int], accepted: Sequence[bool]) -> int:
    """The reward reranker's pick: highest score, ties to the earliest draw."""
    return next((j for j in order if accepted[j]), order[0])


# A verifier that disagrees with correctness both ways (accepted-wrong and rejected-right).
ACCEPTED = (True, True, False, False, True, False)
CORRECT = (True, False, True, False, True, False)


def test_best_of_k_with_an_imperfect_verifier_equals_brute_force() -> None:
    counts = VerifierCounts.from_samples(ACCEPTED, CORRECT)
    n = len(ACCEPTED)
    for k in range(1, n + 1):
        orders = list(itertools.permutations(range(n), k))
        brute = sum(CORRECT[_pick(o, ACCEPTED)] for o in orders) / len(orders)
        assert best_of_k_quality(counts, k) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("draws", [[1, 2, 3, 4, 5, 6], [2, 4, 6], [3, 5], [1, 4]])
def test_sequential_schedule_equals_brute_force_over_orders(draws: list[int]) -> None:
    counts = VerifierCounts.from_samples(ACCEPTED, CORRECT)
    total_samples = total_quality = 0.0
    perms = list(itertools.permutations(range(len(ACCEPTED))))
    for order in perms:
        for size in draws:  # stop after the first round that holds an accepted candidate
            if any(ACCEPTED[j] for j in order[:size]):
                break
        total_samples += size
        total_quality += CORRECT[_pick(order[:size], ACCEPTED)]
    samples, quality = schedule_expectation(counts, draws)
    assert samples == pytest.approx(total_samples / len(perms), abs=1e-12)
    assert quality == pytest.approx(total_quality / len(perms), abs=1e-12)


def test_schedule_rejects_non_increasing_draws() -> None:
    counts = VerifierCounts.from_samples(ACCEPTED, CORRECT)
    with pytest.raises(ValueError):
        schedule_expectation(counts, [2, 2])
    with pytest.raises(ValueError):
        schedule_expectation(counts, [])


def test_vote_monte_carlo_agrees_with_exact_enumeration_within_its_error() -> None:
    answers = ["7", "7", "3", None, "3", "3", "9"]
    correct = [True, True, False, False, False, False, False]
    k = 3
    orders = list(itertools.permutations(range(len(answers)), k))
    exact_total = 0
    for order in orders:
        groups: dict[str, list[int]] = {}
        for j in order:
            if answers[j] is not None:
                groups.setdefault(str(answers[j]), []).append(j)
        exact_total += correct[max(groups.values(), key=len)[0]] if groups else correct[order[0]]
    exact = exact_total / len(orders)
    est = vote_quality_mc(answers, correct, k, draws=20000, rng=np.random.default_rng(0))
    assert est.draws == 20000
    assert 0 < est.standard_error < 0.01
    assert abs(est.mean - exact) < 4 * est.standard_error
    assert not math.isclose(exact, 2 / 7)  # voting changes the odds relative to one draw
