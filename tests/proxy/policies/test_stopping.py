"""Stop rules of sequential best-of-k: answer streams with known posteriors."""

from __future__ import annotations

import math
import random

import pytest

from proxy.policies.allocation import choose_n, expected_reward_best_of_n
from proxy.policies.stopping import (
    StopRule,
    VerifierStop,
    VoteStop,
    first_round_n,
    majority_posterior,
    next_round_n,
    top_two_votes,
)


def _beta_posterior_by_quadrature(v1: int, v2: int, steps: int = 200_000) -> float:
    """P(x > 1/2) for x ~ Beta(v1 + 1, v2 + 1), by the midpoint rule (independent check)."""
    norm = math.gamma(v1 + v2 + 2) / (math.gamma(v1 + 1) * math.gamma(v2 + 1))
    width = 0.5 / steps
    total = 0.0
    for i in range(steps):
        x = 0.5 + (i + 0.5) * width
        total += x**v1 * (1 - x) ** v2
    return norm * total * width


@pytest.mark.parametrize(
    ("v1", "v2", "expected"),
    [
        (0, 0, 0.5),
        (1, 0, 3 / 4),
        (2, 0, 7 / 8),
        (3, 0, 15 / 16),
        (4, 0, 31 / 32),
        (1, 1, 0.5),
        (3, 1, 26 / 32),
    ],
)
def test_majority_posterior_closed_forms(v1: int, v2: int, expected: float) -> None:
    assert majority_posterior(v1, v2) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("v1", "v2"), [(5, 2), (7, 3), (10, 9), (12, 0), (4, 4)])
def test_majority_posterior_matches_the_beta_integral(v1: int, v2: int) -> None:
    assert majority_posterior(v1, v2) == pytest.approx(
        _beta_posterior_by_quadrature(v1, v2), abs=1e-6
    )


def test_majority_posterior_grows_with_agreement() -> None:
    values = [majority_posterior(v, 2) for v in range(2, 12)]
    assert values == sorted(values)
    assert values[-1] > 0.99


def test_top_two_votes_ignores_missing_answers_and_keeps_first_seen_on_ties() -> None:
    assert top_two_votes([None, "7", "3", None, "3", "7"]) == ("7", 2, 2)
    assert top_two_votes(["1", "2", "2", "3"]) == ("2", 2, 1)
    assert top_two_votes([None, None]) == (None, 0, 0)


def test_vote_stop_on_a_stream_of_answers() -> None:
    rule = VoteStop(confidence=0.9)
    stream = ["18", "18", "20", "18", "18", "18"]
    # posteriors after each sample: 3/4, 7/8, 11/16, 26/32, 57/64, 120/128
    stops = [rule.should_stop(stream[: i + 1], []) for i in range(len(stream))]
    assert stops == [False, False, False, False, False, True]
    assert rule.posterior(stream) == pytest.approx(120 / 128)


def test_vote_stop_needs_min_samples_and_ignores_failures() -> None:
    rule = VoteStop(confidence=0.8, min_samples=3)
    assert not rule.should_stop(["5", "5"], [None, None])  # 7/8 ≥ 0.8 but only two answered
    assert not rule.should_stop(["5", None, "5", None], [])  # failures are not votes
    assert rule.should_stop(["5", None, "5", "5"], [])
    assert not rule.should_stop([None] * 8, [])


def test_vote_stop_confidence_must_be_above_a_half() -> None:
    with pytest.raises(ValueError, match="confidence"):
        VoteStop(confidence=0.5)
    with pytest.raises(ValueError, match="min_samples"):
        VoteStop(confidence=0.9, min_samples=0)


def test_verifier_stop_accepts_the_first_sample_over_the_threshold() -> None:
    rule = VerifierStop(accept_score=0.5)
    assert not rule.should_stop(["1", "2"], [0.1, None])
    assert rule.should_stop(["1", "2", "3"], [0.1, 0.7, 0.9])
    assert rule.accepted_index([0.1, None, 0.5, 0.9]) == 2
    assert rule.accepted_index([None, 0.2]) is None
    with pytest.raises(ValueError, match="scores"):
        rule.should_stop(["1"], [0.1, 0.2])


def test_stop_rules_are_one_type() -> None:
    rules: list[StopRule] = [VerifierStop(0.5), VoteStop(0.9)]
    assert [r.kind for r in rules] == ["verifier", "vote"]
    assert VoteStop(0.9) == VoteStop(confidence=0.9, min_samples=2)


@pytest.mark.parametrize(
    ("drawn", "step", "cap", "expected"),
    [
        (1, 2, 16, 2),
        (15, 2, 16, 1),
        (16, 2, 16, 0),
        (20, 2, 16, 0),
        (0, "double", 8, 1),
        (1, "double", 8, 1),
        (2, "double", 8, 2),
        (4, "double", 8, 4),
        (5, "double", 8, 3),
    ],
)
def test_next_round_n(drawn: int, step: int | str, cap: int, expected: int) -> None:
    assert next_round_n(drawn, step, cap) == expected  # type: ignore[arg-type]


def test_next_round_n_rejects_a_zero_step() -> None:
    with pytest.raises(ValueError, match="step_n"):
        next_round_n(1, 0, 8)


def test_rounds_reach_the_cap_exactly() -> None:
    for step in (1, 2, 3, "double"):
        drawn = 1
        while (add := next_round_n(drawn, step, 13)) > 0:  # type: ignore[arg-type]
            drawn += add
        assert drawn == 13


def _argmax_by_enumeration(p: float, lam: float, n_min: int, n_max: int, eff: float) -> int:
    values = [expected_reward_best_of_n(p, n, eff) - lam * n for n in range(n_min, n_max + 1)]
    best = max(values)
    return n_min + next(i for i, v in enumerate(values) if v >= best - 1e-12)


def test_first_round_n_is_the_argmax_of_the_best_of_k_objective() -> None:
    rng = random.Random(7)
    for _ in range(300):
        p = rng.random()
        lam = rng.choice([0.0, 0.001, 0.01, 0.05, 0.2])
        eff = rng.choice([1.0, 0.8, 0.5])
        n_min = rng.randint(1, 3)
        n_max = rng.randint(n_min, 16)
        got = first_round_n(p, lam, n_min, n_max, eff)
        assert got == _argmax_by_enumeration(p, lam, n_min, n_max, eff)
        assert got == choose_n(
            p, n_min=n_min, n_max=n_max, lambda_=lam, cost_per_sample=1.0, efficiency=eff
        )


def test_first_round_n_is_small_for_easy_and_hopeless_prompts() -> None:
    assert first_round_n(0.97, 0.05, 1, 16, 1.0) == 1
    assert first_round_n(0.001, 0.01, 1, 16, 1.0) == 1
    assert first_round_n(0.3, 0.01, 1, 16, 1.0) > 4
    assert first_round_n(1.0000001, 0.01, 1, 16, 1.0) == 1  # rounding overshoot is clipped
