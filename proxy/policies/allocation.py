"""Allocation maths: how many samples, which arm, and how to split a batch budget.

Pure functions (numpy allowed, no I/O) shared by the ``best_of_k``, ``ladder`` and ``route``
policies, the budget controller and ``POST /v1/adaptive/allocate``.

Conventions
-----------
* ``E[R(n)]`` is the expected reward of drawing ``n`` samples and keeping the reranker's pick.
  For binary rewards with single-sample success probability ``p`` and an ideal reranker,
  ``E[R(n)] = 1 - (1 - p)^n``. A real reranker captures only a fraction ``efficiency`` of the
  gain over one sample: ``E[R(n)] = p + efficiency · ((1 - (1 - p)^n) - p)``.
* Graded rewards: a *reward curve* ``curve[k - 1] = E[R(k)]`` (ideal reranker) for
  ``k = 1..len(curve)``; beyond its end the curve is flat.
* *Marginal gains* of a prompt: ``gains[k] = E[R(k + 1)] - E[R(k)]`` (the gain of its
  ``(k+1)``-th unit of compute). Concave rewards have non-increasing gains, which is what makes
  the greedy allocations below exact.
* Costs are in whatever unit the caller uses for λ (USD per request in the proxy); λ is the
  price of one cost unit in reward units, so a policy maximises ``reward − λ · cost``.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Objective values closer than this are ties (then the cheaper option wins).
_TIE_EPS = 1e-12


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")


def _check_efficiency(efficiency: float) -> None:
    if not 0.0 <= efficiency <= 1.0 or math.isnan(efficiency):
        raise ValueError(f"efficiency must be in [0, 1], got {efficiency!r}")


def expected_reward_best_of_n(p: float, n: int, efficiency: float = 1.0) -> float:
    """Expected binary reward of best-of-``n`` with single-sample success probability ``p``.

    ``p + efficiency · ((1 − (1 − p)^n) − p)`` for ``n ≥ 1`` and ``0`` for ``n = 0``.
    """
    _check_probability(p)
    _check_efficiency(efficiency)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n == 0:
        return 0.0
    ideal = 1.0 - (1.0 - p) ** n
    return p + efficiency * (ideal - p)


def expected_reward_curve(curve: Sequence[float], n: int, efficiency: float = 1.0) -> float:
    """Expected graded reward of best-of-``n`` from an ideal-reranker reward curve.

    ``curve[k - 1]`` is ``E[R(k)]`` with an ideal reranker. The real reranker keeps
    ``efficiency`` of the gain over one sample: ``curve[0] + efficiency · (curve[n-1] − curve[0])``.
    ``n`` past the end of the curve uses its last value; ``n = 0`` is ``0``.
    """
    _check_efficiency(efficiency)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not curve:
        raise ValueError("reward curve is empty")
    if n == 0:
        return 0.0
    value = curve[min(n, len(curve)) - 1]
    return curve[0] + efficiency * (value - curve[0])


def _reward(p: float | None, curve: Sequence[float] | None, n: int, efficiency: float) -> float:
    if curve is not None:
        return expected_reward_curve(curve, n, efficiency)
    if p is None:
        raise ValueError("give either p or a reward curve")
    return expected_reward_best_of_n(p, n, efficiency)


def marginal_gains(
    p: float | None,
    n_max: int,
    *,
    efficiency: float = 1.0,
    curve: Sequence[float] | None = None,
) -> list[float]:
    """Per-prompt marginal gains ``[E[R(1)] − E[R(0)], …, E[R(n_max)] − E[R(n_max − 1)]]``.

    From ``p`` (binary rewards) or from a reward ``curve`` (graded rewards). This is the row
    :func:`greedy_allocate` expects for one prompt.
    """
    if n_max < 0:
        raise ValueError(f"n_max must be >= 0, got {n_max}")
    rewards = [_reward(p, curve, n, efficiency) for n in range(n_max + 1)]
    return [rewards[k + 1] - rewards[k] for k in range(n_max)]


def choose_n(
    p: float | None,
    *,
    n_min: int,
    n_max: int,
    lambda_: float,
    cost_per_sample: float,
    efficiency: float = 1.0,
    curve: Sequence[float] | None = None,
) -> int:
    """The ``n`` in ``[n_min, n_max]`` maximising ``E[R(n)] − λ · n · cost_per_sample``.

    Greedy marginal allocation: starting from ``n_min``, add a sample while its marginal gain
    exceeds its price ``λ · cost_per_sample``. With concave ``E[R]`` (always true for the binary
    formula) the first non-positive margin ends the search and the result is the exact argmax;
    ties go to the smaller ``n``.
    """
    if not 0 <= n_min <= n_max:
        raise ValueError(f"need 0 <= n_min <= n_max, got n_min={n_min}, n_max={n_max}")
    if lambda_ < 0 or cost_per_sample < 0:
        raise ValueError("lambda_ and cost_per_sample must be >= 0")
    price = lambda_ * cost_per_sample
    n = n_min
    current = _reward(p, curve, n, efficiency)
    while n < n_max:
        following = _reward(p, curve, n + 1, efficiency)
        if following - current - price <= _TIE_EPS:
            break
        n, current = n + 1, following
    return n


def choose_arm(expected_rewards: Sequence[float], costs: Sequence[float], lambda_: float) -> int:
    """Index of the arm maximising ``expected_reward − λ · cost`` (ladder policies).

    Ties (within 1e-12) go to the cheaper arm, then to the lower index.
    """
    if len(expected_rewards) != len(costs) or not costs:
        raise ValueError("expected_rewards and costs must be non-empty and of equal length")
    best = 0
    best_value = expected_rewards[0] - lambda_ * costs[0]
    for i in range(1, len(costs)):
        value = expected_rewards[i] - lambda_ * costs[i]
        if value > best_value + _TIE_EPS or (
            abs(value - best_value) <= _TIE_EPS and costs[i] < costs[best]
        ):
            best, best_value = i, value
    return best


def route_expensive(
    gain: float,
    *,
    lambda_: float | None = None,
    delta_cost: float = 1.0,
    threshold: float | None = None,
) -> bool:
    """Two-arm routing: expensive iff ``gain ≥ threshold`` (fixed) or ``gain ≥ λ · Δcost``.

    The two-arm case of :func:`choose_arm`, except that an exact tie goes to the expensive arm
    (the routing issue's "gain ≥ threshold" convention).
    """
    if threshold is not None:
        return gain >= threshold
    if lambda_ is None:
        raise ValueError("give either threshold or lambda_")
    return gain >= lambda_ * delta_cost


@dataclass(frozen=True)
class DecisionProblem:
    """One request's choice, as the policy saw it: per-arm expected reward and cost.

    ``samples`` (n per arm) and ``expensive`` (arm flagged expensive in the YAML) are what the
    budget targets count. The budget controller replays these to find the λ meeting a target.
    """

    expected_rewards: tuple[float, ...]
    costs: tuple[float, ...]
    samples: tuple[int, ...]
    expensive: tuple[bool, ...]

    def __post_init__(self) -> None:
        sizes = {
            len(self.expected_rewards),
            len(self.costs),
            len(self.samples),
            len(self.expensive),
        }
        if len(sizes) != 1 or not self.costs:
            raise ValueError("DecisionProblem fields must be non-empty and of equal length")

    def choose(self, lambda_: float) -> int:
        """The arm a policy with price ``lambda_`` picks (:func:`choose_arm`)."""
        return choose_arm(self.expected_rewards, self.costs, lambda_)

    @classmethod
    def route(
        cls, p_cheap: float, p_expensive: float, *, cost_cheap: float, cost_expensive: float
    ) -> DecisionProblem:
        """Two arms: 0 = cheap, 1 = expensive (one sample each)."""
        return cls((p_cheap, p_expensive), (cost_cheap, cost_expensive), (1, 1), (False, True))

    @classmethod
    def best_of_k(
        cls,
        p: float | None,
        *,
        n_min: int,
        n_max: int,
        cost_per_sample: float,
        efficiency: float = 1.0,
        curve: Sequence[float] | None = None,
        expensive_from: int | None = None,
    ) -> DecisionProblem:
        """Arms ``n = n_min..n_max``; arm ``i`` draws ``n_min + i`` samples.

        An arm counts as expensive when ``n ≥ expensive_from`` (default: never).
        """
        ns = range(n_min, n_max + 1)
        return cls(
            tuple(_reward(p, curve, n, efficiency) for n in ns),
            tuple(n * cost_per_sample for n in ns),
            tuple(ns),
            tuple(expensive_from is not None and n >= expensive_from for n in ns),
        )


def greedy_allocate(
    gains: Sequence[Sequence[float]],
    costs: Sequence[Sequence[float]] | None,
    budget: float,
    n_min: int = 0,
) -> list[int]:
    """The paper's batch allocation: units per prompt under a total ``budget``.

    ``gains[i][k]`` is the marginal gain of prompt ``i``'s ``(k+1)``-th unit, ``costs[i][k]`` its
    cost (``None``: every unit costs 1, so ``budget`` counts samples). Every prompt first gets
    ``n_min`` units (``ValueError`` if the budget cannot pay for them); then a priority queue
    repeatedly buys the unit with the highest gain per unit cost that still fits, and stops
    buying for a prompt once its next gain is non-positive or does not fit.

    Exact (the same total gain as an exhaustive search, which the tests check) for concave
    rewards — non-increasing gains — when every unit costs the same (a budget in samples).
    With per-prompt prices (a budget in USD) the problem is a knapsack and the greedy is within
    one unit's gain of the optimum. Ties go to the lower prompt index.
    """
    if n_min < 0:
        raise ValueError("n_min must be >= 0")
    if costs is not None and len(costs) != len(gains):
        raise ValueError("gains and costs must have one row per prompt")
    unit_costs = [
        [1.0] * len(row) if costs is None else [float(c) for c in costs[i]]
        for i, row in enumerate(gains)
    ]
    for i, row in enumerate(gains):
        if len(unit_costs[i]) != len(row):
            raise ValueError(f"prompt {i}: gains and costs differ in length")
        if len(row) < n_min:
            raise ValueError(f"prompt {i}: fewer than n_min={n_min} units available")
        if any(c <= 0 for c in unit_costs[i]):
            raise ValueError(f"prompt {i}: unit costs must be > 0")
    alloc = [n_min] * len(gains)
    remaining = float(budget) - sum(sum(row[:n_min]) for row in unit_costs)
    if remaining < -_TIE_EPS:
        raise ValueError(f"budget {budget} cannot pay for n_min={n_min} units per prompt")
    heap: list[tuple[float, int]] = []
    for i, row in enumerate(gains):
        if len(row) > n_min and row[n_min] > 0:
            heap.append((-row[n_min] / unit_costs[i][n_min], i))
    heapq.heapify(heap)
    while heap:
        _, i = heapq.heappop(heap)
        k = alloc[i]
        if unit_costs[i][k] > remaining + _TIE_EPS:
            continue
        remaining -= unit_costs[i][k]
        alloc[i] = k + 1
        if k + 1 < len(gains[i]) and gains[i][k + 1] > 0:
            heapq.heappush(heap, (-gains[i][k + 1] / unit_costs[i][k + 1], i))
    return alloc


@dataclass(frozen=True)
class Allocation:
    """One prompt's share of a batch budget (``POST /v1/adaptive/allocate``).

    ``gain`` is the expected reward bought beyond one sample, ``E[R(n)] − E[R(1)]`` (``0`` for
    ``n = 0``), the same gain a best-of-k decision reports.
    """

    n: int
    expected_reward: float
    gain: float
    cost: float


def allocate_batch(
    ps: Sequence[float],
    budget: float,
    *,
    n_min: int = 1,
    n_max: int = 8,
    efficiency: float = 1.0,
    cost_per_sample: Sequence[float] | None = None,
) -> list[Allocation]:
    """Split ``budget`` over prompts with success probabilities ``ps`` (greedy marginal).

    ``cost_per_sample`` is ``None`` for a budget in samples, or each prompt's USD per sample for
    a budget in USD. Results are in request order; their costs sum to at most ``budget``.
    """
    gains = [marginal_gains(p, n_max, efficiency=efficiency) for p in ps]
    costs = None if cost_per_sample is None else [[c] * n_max for c in cost_per_sample]
    alloc = greedy_allocate(gains, costs, budget, n_min=n_min)
    out = []
    for i, (p, n) in enumerate(zip(ps, alloc, strict=True)):
        reward = expected_reward_best_of_n(p, n, efficiency)
        base = p if n else 0.0  # E[R(1)] = p whatever the reranker's efficiency
        unit = 1.0 if cost_per_sample is None else cost_per_sample[i]
        out.append(Allocation(n=n, expected_reward=reward, gain=reward - base, cost=n * unit))
    return out
