"""The no-prediction frontier and the equal-quality rule of the cascade analysis.

*Frontier*: every single system a deployment could send all its requests to (each arm, each
checker alone), and every random mixture of them (each request to system i with probability
w_i, the same w for every prompt, so nothing is predicted). A mixture's mean cost and mean
quality are the w-weighted means of the systems', so the cheapest mixture reaching a quality q
is read off the lower convex hull of the systems' (mean quality, mean cost) points: a linear
programme with one quality constraint, whose optimum mixes at most two systems. A policy that
reads prompts or answers *saves* against it only if it is cheaper than that mixture at its own
quality: ``saved = 1 − cost / frontier_cost(quality)``, negative when a single system or a mix
does better without predicting anything.

*Equal quality*: a saving is stated "at equal quality" only when the quality difference's 95%
interval includes 0 and its point estimate is at least ``−EQUAL_QUALITY_TOLERANCE``; otherwise the
quality change is reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# 0.1 accuracy points: about one question in the 1,307 recorded GSM8K prompts.
EQUAL_QUALITY_TOLERANCE = 0.001
EQUAL_QUALITY_RULE = (
    "a saving is at equal quality when the quality difference's 95% interval includes 0 and "
    f"its point estimate is ≥ −{100 * EQUAL_QUALITY_TOLERANCE:.1f} pts"
)


def at_equal_quality(
    delta_quality: float,
    delta_ci95: Sequence[float],
    tolerance: float = EQUAL_QUALITY_TOLERANCE,
) -> bool:
    """Whether a quality difference (policy − reference, as a fraction) counts as equal quality."""
    lo, hi = float(delta_ci95[0]), float(delta_ci95[1])
    return lo <= 0.0 <= hi and delta_quality >= -tolerance - 1e-12


@dataclass(frozen=True)
class Mix:
    """The cheapest random mixture of single systems reaching a quality."""

    cost: float  # mean cost per request
    weights: tuple[tuple[int, float], ...]  # (system index, probability), at most two


def cheapest_mix(quality: FloatArray, cost: FloatArray, target: float) -> Mix | None:
    """The cheapest mixture of systems (mean ``quality[i]``, mean ``cost[i]``) whose mean quality
    reaches ``target``; ``None`` when no system reaches it."""
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    best: Mix | None = None
    for i in range(len(q)):
        if q[i] >= target and (best is None or c[i] < best.cost):
            best = Mix(float(c[i]), ((i, 1.0),))
    for i in range(len(q)):
        for j in range(len(q)):
            if not q[i] < target < q[j]:
                continue
            w = float((target - q[i]) / (q[j] - q[i]))
            mixed = float((1.0 - w) * c[i] + w * c[j])
            if best is None or mixed < best.cost:
                best = Mix(mixed, ((i, 1.0 - w), (j, w)))
    return best


def frontier_cost(quality: FloatArray, cost: FloatArray, target: float) -> float:
    """Mean cost of :func:`cheapest_mix` (``nan`` when no system reaches ``target``)."""
    mix = cheapest_mix(quality, cost, target)
    return float("nan") if mix is None else mix.cost


def on_frontier(quality: FloatArray, cost: FloatArray) -> npt.NDArray[np.bool_]:
    """Systems that are themselves the cheapest way to reach their own quality."""
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    return np.asarray(
        [c[i] <= frontier_cost(q, c, float(q[i])) * (1 + 1e-12) for i in range(len(q))]
    )


def frontier_quality(quality: FloatArray, policy_quality: float) -> float:
    """The quality at which a policy is compared with the frontier: its own, or the best single
    system's where the policy is more accurate than every system (no mixture reaches it)."""
    return min(float(policy_quality), float(np.max(quality)))


def saved_vs_frontier(
    policy_quality: float, policy_cost: float, quality: FloatArray, cost: FloatArray
) -> float:
    """``1 − policy_cost / frontier_cost`` at :func:`frontier_quality` (``nan`` if the policy's
    cost is ``nan``)."""
    if np.isnan(policy_cost) or np.isnan(policy_quality):
        return float("nan")
    reference = frontier_cost(quality, cost, frontier_quality(quality, policy_quality))
    return float(1.0 - policy_cost / reference)


def frontier_summary(
    names: Sequence[str], quality: FloatArray, cost: FloatArray, target: float
) -> dict[str, Any]:
    """The single systems (mean ``quality``/``cost`` each), which of them lie on the frontier,
    and the cheapest mix reaching ``target`` (JSON-ready)."""
    on = on_frontier(quality, cost)
    mix = cheapest_mix(quality, cost, target)
    return {
        "systems": [
            {
                "system": name,
                "accuracy": float(quality[i]),
                "cost_usd_per_request": float(cost[i]),
                "on_frontier": bool(on[i]),
            }
            for i, name in enumerate(names)
        ],
        "at_all_expensive_accuracy": {
            "accuracy": target,
            "cost_usd_per_request": float("nan") if mix is None else mix.cost,
            "mix": []
            if mix is None
            else [{"system": names[i], "weight": w} for i, w in mix.weights],
        },
    }
