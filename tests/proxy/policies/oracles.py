"""Brute-force oracles the allocation tests compare the shipped greedy against, and the sums
they score an allocation by."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence


def allocation_gain(gains: Sequence[Sequence[float]], alloc: Sequence[int]) -> float:
    """Total gain of an allocation (sum of each prompt's first ``alloc[i]`` marginal gains)."""
    return float(sum(sum(row[:n]) for row, n in zip(gains, alloc, strict=True)))


def allocation_cost(costs: Sequence[Sequence[float]] | None, alloc: Sequence[int]) -> float:
    """Total cost of an allocation (unit costs when ``costs`` is ``None``)."""
    if costs is None:
        return float(sum(alloc))
    return float(sum(sum(row[:n]) for row, n in zip(costs, alloc, strict=True)))


def brute_force_allocate(
    gains: Sequence[Sequence[float]],
    costs: Sequence[Sequence[float]] | None,
    budget: float,
    n_min: int = 0,
) -> list[int]:
    """Exhaustive optimum of the batch allocation (exponential in the batch size)."""
    best: list[int] = [n_min] * len(gains)
    best_gain = -math.inf
    ranges = [range(n_min, len(row) + 1) for row in gains]
    for combo in itertools.product(*ranges):
        if allocation_cost(costs, combo) > budget + 1e-9:
            continue
        total = allocation_gain(gains, combo)
        if total > best_gain + 1e-12:
            best, best_gain = list(combo), total
    if best_gain == -math.inf:
        raise ValueError(f"budget {budget} cannot pay for n_min={n_min} units per prompt")
    return best
