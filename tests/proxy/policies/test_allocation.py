"""The allocation maths: best-of-n rewards, choosing n, the ladder, and batch allocation."""

from __future__ import annotations

import itertools
import random

import pytest

from proxy.policies.allocation import (
    DecisionProblem,
    allocate_batch,
    choose_arm,
    choose_n,
    expected_reward_best_of_n,
    expected_reward_curve,
    greedy_allocate,
    marginal_gains,
    route_expensive,
)
from tests.proxy.policies.oracles import allocation_cost, allocation_gain, brute_force_allocate


def test_best_of_n_formula() -> None:
    assert expected_reward_best_of_n(0.3, 0) == 0.0
    assert expected_reward_best_of_n(0.3, 1) == pytest.approx(0.3)
    assert expected_reward_best_of_n(0.3, 3) == pytest.approx(1 - 0.7**3)
    # A reranker with efficiency 0.5 keeps half of the gain over one sample.
    assert expected_reward_best_of_n(0.3, 3, 0.5) == pytest.approx(0.3 + 0.5 * (1 - 0.7**3 - 0.3))
    assert expected_reward_best_of_n(0.3, 5, 0.0) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        expected_reward_best_of_n(1.5, 2)
    with pytest.raises(ValueError):
        expected_reward_best_of_n(0.5, 2, efficiency=2.0)


def test_reward_curve_is_flat_past_its_end_and_discounted() -> None:
    curve = [0.4, 0.6, 0.7]
    assert expected_reward_curve(curve, 0) == 0.0
    assert expected_reward_curve(curve, 2) == pytest.approx(0.6)
    assert expected_reward_curve(curve, 10) == pytest.approx(0.7)
    assert expected_reward_curve(curve, 3, efficiency=0.5) == pytest.approx(0.55)


def test_marginal_gains_sum_to_the_reward_and_are_non_increasing() -> None:
    gains = marginal_gains(0.2, 6, efficiency=0.8)
    assert sum(gains) == pytest.approx(expected_reward_best_of_n(0.2, 6, 0.8))
    assert all(a >= b for a, b in itertools.pairwise(gains))


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.7, 0.99, 1.0])
@pytest.mark.parametrize("lambda_", [0.0, 0.5, 5.0, 50.0])
@pytest.mark.parametrize("efficiency", [1.0, 0.6])
def test_choose_n_is_the_argmax(p: float, lambda_: float, efficiency: float) -> None:
    cost = 0.01
    n = choose_n(p, n_min=1, n_max=8, lambda_=lambda_, cost_per_sample=cost, efficiency=efficiency)
    values = {
        k: expected_reward_best_of_n(p, k, efficiency) - lambda_ * cost * k for k in range(1, 9)
    }
    best = max(values.values())
    assert values[n] == pytest.approx(best, abs=1e-12)
    # Ties go to the smaller n.
    assert n == min(k for k, v in values.items() if v >= best - 1e-12)


def test_choose_n_extremes() -> None:
    assert choose_n(0.4, n_min=2, n_max=8, lambda_=1e9, cost_per_sample=1.0) == 2
    assert choose_n(0.4, n_min=1, n_max=8, lambda_=0.0, cost_per_sample=1.0) == 8
    # Certain or hopeless prompts gain nothing from more samples.
    assert choose_n(1.0, n_min=1, n_max=8, lambda_=0.0, cost_per_sample=1.0) == 1
    assert choose_n(0.0, n_min=1, n_max=8, lambda_=0.0, cost_per_sample=1.0) == 1
    assert (
        choose_n(None, n_min=1, n_max=8, lambda_=0.0, cost_per_sample=1.0, curve=[0.5, 0.8, 0.8])
        == 2
    )
    with pytest.raises(ValueError):
        choose_n(0.5, n_min=3, n_max=2, lambda_=0.0, cost_per_sample=1.0)


def test_ladder_with_four_arms() -> None:
    # cheap, cheap best-of-4, strong, strong best-of-4.
    rewards = [0.50, 0.65, 0.80, 0.88]
    costs = [1.0, 4.0, 10.0, 40.0]
    assert choose_arm(rewards, costs, 0.0) == 3
    assert choose_arm(rewards, costs, 0.002) == 3
    assert choose_arm(rewards, costs, 0.004) == 2
    assert choose_arm(rewards, costs, 0.04) == 1
    assert choose_arm(rewards, costs, 0.1) == 0
    # Brute force over a grid of λ.
    for lambda_ in [i / 1000 for i in range(200)]:
        values = [r - lambda_ * c for r, c in zip(rewards, costs, strict=True)]
        assert values[choose_arm(rewards, costs, lambda_)] == pytest.approx(max(values))


def test_choose_arm_ties_go_to_the_cheaper_arm() -> None:
    assert choose_arm([0.5, 0.5], [2.0, 1.0], 0.0) == 1
    assert choose_arm([0.5, 0.6], [1.0, 2.0], 0.1) == 0
    assert DecisionProblem.route(0.5, 0.6, cost_cheap=1.0, cost_expensive=2.0).choose(0.05) == 1


def test_route_is_the_two_arm_case() -> None:
    assert route_expensive(0.2, threshold=0.2)
    assert not route_expensive(0.19, threshold=0.2)
    assert route_expensive(0.2, lambda_=10.0, delta_cost=0.01)
    assert not route_expensive(0.05, lambda_=10.0, delta_cost=0.01)
    for gain in (0.0, 0.05, 0.11, 0.5):
        problem = DecisionProblem.route(0.3, 0.3 + gain, cost_cheap=0.01, cost_expensive=0.02)
        assert (problem.choose(10.0) == 1) == (gain > 10.0 * 0.01)


def test_best_of_k_problem_agrees_with_choose_n() -> None:
    problem = DecisionProblem.best_of_k(
        0.3, n_min=1, n_max=8, cost_per_sample=0.01, efficiency=0.9, expensive_from=2
    )
    assert problem.samples == tuple(range(1, 9))
    assert problem.expensive[0] is False and problem.expensive[1] is True
    for lambda_ in (0.0, 1.0, 3.0, 10.0, 100.0):
        arm = problem.choose(lambda_)
        assert problem.samples[arm] == choose_n(
            0.3, n_min=1, n_max=8, lambda_=lambda_, cost_per_sample=0.01, efficiency=0.9
        )


@pytest.mark.parametrize("seed", range(30))
def test_greedy_matches_brute_force_on_concave_gains(seed: int) -> None:
    rng = random.Random(seed)
    prompts = rng.randint(1, 4)
    n_max = rng.randint(1, 4)
    gains = [
        marginal_gains(rng.random(), n_max, efficiency=rng.uniform(0.5, 1.0))
        for _ in range(prompts)
    ]
    n_min = rng.randint(0, 1)
    budget = rng.randint(n_min * prompts, prompts * n_max)
    greedy = greedy_allocate(gains, None, budget, n_min=n_min)
    exact = brute_force_allocate(gains, None, budget, n_min=n_min)
    assert sum(greedy) <= budget
    assert all(n_min <= n <= n_max for n in greedy)
    assert allocation_gain(gains, greedy) == pytest.approx(allocation_gain(gains, exact))


@pytest.mark.parametrize("seed", range(15))
def test_greedy_with_usd_costs_is_near_optimal(seed: int) -> None:
    rng = random.Random(100 + seed)
    prompts, n_max = 3, 3
    gains = [marginal_gains(rng.random(), n_max) for _ in range(prompts)]
    # Per-sample prices differ by prompt (longer prompts cost more): a knapsack, where the
    # greedy is within one unit's gain of the optimum.
    costs = [[float(rng.randint(1, 3))] * n_max for _ in range(prompts)]
    budget = rng.uniform(0, 12)
    greedy = greedy_allocate(gains, costs, budget)
    exact = brute_force_allocate(gains, costs, budget)
    assert allocation_cost(costs, greedy) <= budget
    largest_unit = max(max(row) for row in gains)
    assert allocation_gain(gains, greedy) >= allocation_gain(gains, exact) - largest_unit - 1e-12
    if all(row == costs[0] for row in costs):
        assert allocation_gain(gains, greedy) == pytest.approx(allocation_gain(gains, exact))


def test_greedy_spends_on_the_most_useful_prompts() -> None:
    gains = [marginal_gains(p, 4) for p in (0.0, 0.2, 0.5, 1.0)]
    alloc = greedy_allocate(gains, None, 8, n_min=1)
    assert sum(alloc) <= 8
    # Hopeless and certain prompts keep n_min; the uncertain ones get the extra samples.
    assert alloc[0] == 1 and alloc[3] == 1
    assert alloc[1] + alloc[2] == 6
    with pytest.raises(ValueError):
        greedy_allocate(gains, None, 3, n_min=1)


def test_allocate_batch_in_samples_and_in_usd() -> None:
    ps = [0.05, 0.4, 0.9, 0.6]
    result = allocate_batch(ps, 10, n_min=1, n_max=4)
    assert sum(a.n for a in result) <= 10 and all(1 <= a.n <= 4 for a in result)
    gains = [marginal_gains(p, 4) for p in ps]
    exact = brute_force_allocate(gains, None, 10, n_min=1)
    assert allocation_gain(gains, [a.n for a in result]) == pytest.approx(
        allocation_gain(gains, exact)
    )
    assert result[1].gain == pytest.approx(expected_reward_best_of_n(0.4, result[1].n) - 0.4)
    usd = allocate_batch(ps, 0.01, n_min=1, n_max=4, cost_per_sample=[0.001, 0.002, 0.001, 0.001])
    assert sum(a.cost for a in usd) <= 0.01 + 1e-12
