"""The benchmark's maths: sweeps, PGR/APGR/CPT (RouteLLM's definitions), savings, bootstrap.

A *curve* is a pair of arrays ``(cost, quality)`` sorted by cost, where ``cost`` is a normalised
cost in [0, 1] (for two-arm suites the fraction of requests sent to the expensive arm, RouteLLM's
x-axis; for multi-arm suites the realised cost rescaled between the all-cheap and the
all-expensive reference) and ``quality`` the mean per-prompt reward at that operating point.

RouteLLM (lm-sys/RouteLLM, ``routellm/evals/evaluate.py``) defines
``PGR(c) = (q(c) - q_weak) / (q_strong - q_weak)``, APGR as the trapezoidal area under PGR over
the strong-call fraction, and CPT(x%) as the strong-call fraction at which the quality first
reaches ``q_weak + x (q_strong - q_weak)``, interpolated linearly between sweep points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# The routing curves are shared with the predictor's model card: one definition of each.
from predictor_onnx.routing import FloatArray as FloatArray
from predictor_onnx.routing import Sweep as Sweep
from predictor_onnx.routing import apgr as apgr
from predictor_onnx.routing import as_curve
from predictor_onnx.routing import cost_to_reach as cost_to_reach
from predictor_onnx.routing import cpt as cpt
from predictor_onnx.routing import pgr as pgr
from predictor_onnx.routing import threshold_sweep as threshold_sweep


def oracle_scores(q_cheap: FloatArray, q_expensive: FloatArray) -> FloatArray:
    """Scores of the oracle: the realised gain of the expensive arm (knows the outcomes)."""
    return np.asarray(q_expensive, np.float64) - np.asarray(q_cheap, np.float64)


def quality_at(
    cost: Sequence[float] | FloatArray, quality: Sequence[float] | FloatArray, budget: float
) -> float:
    """Quality of the curve at a given cost (linear interpolation between operating points)."""
    c, q = as_curve(cost, quality)
    return float(np.interp(budget, c, q))


def saved_at_equal_quality(
    cost: Sequence[float] | FloatArray, quality: Sequence[float] | FloatArray, q_expensive: float
) -> float:
    """Fraction of the all-expensive cost saved while matching its quality (0 if never).

    ``cost`` must be normalised so that the all-expensive policy costs 1.
    """
    needed = cost_to_reach(cost, quality, q_expensive)
    return 0.0 if np.isnan(needed) else float(max(0.0, 1.0 - needed))


def bootstrap_ci(
    statistic: Callable[[npt.NDArray[np.int64]], float],
    n: int,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(indices)`` over prompts resampled with
    replacement. ``nan`` statistics (e.g. a target never reached) are dropped."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        v = statistic(rng.integers(0, n, size=n))
        if not np.isnan(v):
            values.append(v)
    if not values:
        return (float("nan"), float("nan"))
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(values), [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


@dataclass(frozen=True)
class LadderPoint:
    """One operating point of a multi-arm policy at price of compute ``lam``."""

    lam: float
    quality: float
    cost_usd: float
    arm_counts: tuple[int, ...]


def ladder_sweep(
    predicted: FloatArray,
    reward: FloatArray,
    cost_usd: FloatArray,
    cost_estimate_usd: FloatArray,
    lambdas: Sequence[float],
) -> list[LadderPoint]:
    """For each λ, every prompt takes ``argmax_arm predicted - λ · cost_estimate``.

    ``predicted``/``reward``/``cost_usd`` are (prompts × arms); ``cost_estimate_usd`` is the
    per-arm cost the policy knows in advance; the realised cost is ``cost_usd`` of the chosen arm.
    """
    n, k = reward.shape
    points = []
    rows = np.arange(n)
    for lam in lambdas:
        choice = np.argmax(predicted - lam * cost_estimate_usd[None, :], axis=1)
        counts = np.bincount(choice, minlength=k)
        points.append(
            LadderPoint(
                lam=float(lam),
                quality=float(reward[rows, choice].mean()),
                cost_usd=float(cost_usd[rows, choice].mean()),
                arm_counts=tuple(int(x) for x in counts),
            )
        )
    return points


def normalise_cost(cost_usd: FloatArray | float, low_usd: float, high_usd: float) -> FloatArray:
    """Rescale mean cost per request so that ``low`` maps to 0 and ``high`` to 1."""
    return (np.asarray(cost_usd, dtype=np.float64) - low_usd) / (high_usd - low_usd)


def upper_envelope(cost: FloatArray, quality: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Best quality reachable at or below each cost (a running maximum over sorted cost)."""
    c, q = as_curve(cost, quality)
    return c, np.maximum.accumulate(q)


def bootstrap_cis(
    statistics: Callable[[npt.NDArray[np.int64]], dict[str, float]],
    n: int,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """:func:`bootstrap_ci` for several statistics computed together on each resample."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    for _ in range(n_boot):
        for key, v in statistics(rng.integers(0, n, size=n)).items():
            if v is not None and not np.isnan(v):
                values.setdefault(key, []).append(float(v))
    alpha = (1.0 - level) / 2.0
    out: dict[str, tuple[float, float]] = {}
    for key, vs in values.items():
        lo, hi = np.quantile(np.asarray(vs), [alpha, 1.0 - alpha])
        out[key] = (float(lo), float(hi))
    return out
