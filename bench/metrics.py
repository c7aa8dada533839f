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

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Sweep:
    """Operating points of a two-arm threshold policy, from all-cheap to all-expensive.

    ``thresholds[i]`` routes a prompt to the expensive arm iff its score ``>= thresholds[i]``;
    the first point (threshold ``+inf``) sends nothing to the expensive arm.
    """

    thresholds: FloatArray
    n_expensive: npt.NDArray[np.int64]
    frac_expensive: FloatArray
    quality: FloatArray
    cost_usd: FloatArray


def threshold_sweep(
    scores: Sequence[float] | FloatArray,
    q_cheap: Sequence[float] | FloatArray,
    q_expensive: Sequence[float] | FloatArray,
    cost_cheap_usd: Sequence[float] | FloatArray | None = None,
    cost_expensive_usd: Sequence[float] | FloatArray | None = None,
    *,
    split_ties: bool = False,
) -> Sweep:
    """Every distinct operating point of "expensive iff score >= threshold".

    Tied scores cannot be separated by a threshold, so a tie group moves to the expensive arm
    together (one point per distinct score). ``split_ties=True`` gives one point per prompt, which
    is what an oracle (or a randomised policy) can realise.
    """
    s = np.asarray(scores, dtype=np.float64)
    qc = np.asarray(q_cheap, dtype=np.float64)
    qe = np.asarray(q_expensive, dtype=np.float64)
    n = len(s)
    cc = np.zeros(n) if cost_cheap_usd is None else np.asarray(cost_cheap_usd, dtype=np.float64)
    ce = np.zeros(n) if cost_expensive_usd is None else np.asarray(cost_expensive_usd, np.float64)
    order = np.argsort(-s, kind="stable")
    gain_q = np.concatenate([[0.0], np.cumsum((qe - qc)[order])])
    gain_c = np.concatenate([[0.0], np.cumsum((ce - cc)[order])])
    k = np.arange(n + 1)
    sorted_s = s[order]
    if split_ties or n == 0:
        keep = k
    else:
        # Keep k = 0 and every k that ends a tie group (the next score differs, or k = n).
        ends = np.flatnonzero(np.append(sorted_s[1:] != sorted_s[:-1], True)) + 1
        keep = np.concatenate([[0], ends])
    thresholds = np.concatenate([[np.inf], sorted_s])[keep]
    return Sweep(
        thresholds=thresholds,
        n_expensive=k[keep].astype(np.int64),
        frac_expensive=k[keep] / max(n, 1),
        quality=(qc.sum() + gain_q[keep]) / max(n, 1),
        cost_usd=cc.sum() + gain_c[keep],
    )


def oracle_scores(q_cheap: FloatArray, q_expensive: FloatArray) -> FloatArray:
    """Scores of the oracle: the realised gain of the expensive arm (knows the outcomes)."""
    return np.asarray(q_expensive, np.float64) - np.asarray(q_cheap, np.float64)


def random_scores(n: int, seed: int = 0) -> FloatArray:
    """Scores of random allocation: a random order (each point is a random subset)."""
    return np.random.default_rng(seed).permutation(n).astype(np.float64)


def pgr(quality: float | FloatArray, q_weak: float, q_strong: float) -> FloatArray:
    """Performance gap recovered: 0 at the weak model's quality, 1 at the strong model's."""
    gap = q_strong - q_weak
    q = np.asarray(quality, dtype=np.float64)
    return (q - q_weak) / gap if gap != 0 else np.full_like(q, np.nan)


def _as_curve(
    cost: Sequence[float] | FloatArray, quality: Sequence[float] | FloatArray
) -> tuple[FloatArray, FloatArray]:
    c = np.asarray(cost, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    order = np.argsort(c, kind="stable")
    return c[order], q[order]


def apgr(
    cost: Sequence[float] | FloatArray,
    quality: Sequence[float] | FloatArray,
    q_weak: float,
    q_strong: float,
) -> float:
    """Average PGR: trapezoidal area under PGR over normalised cost in [0, 1].

    The curve must start at cost 0 and end at cost 1 (a full sweep does); it is then exactly
    RouteLLM's ``(AUC - weak_AUC) / (strong_AUC - weak_AUC)``.
    """
    c, q = _as_curve(cost, quality)
    y = pgr(q, q_weak, q_strong)
    span = float(c[-1] - c[0]) if len(c) > 1 else 0.0
    if span <= 0:
        return float("nan")
    area = float(np.sum((y[1:] + y[:-1]) * np.diff(c)) / 2.0)
    return area / span


def cost_to_reach(
    cost: Sequence[float] | FloatArray, quality: Sequence[float] | FloatArray, target_quality: float
) -> float:
    """The lowest cost at which the (linearly interpolated) curve first reaches a quality.

    ``nan`` when the curve never reaches it.
    """
    c, q = _as_curve(cost, quality)
    hit = np.flatnonzero(q >= target_quality - 1e-12)
    if len(hit) == 0:
        return float("nan")
    i = int(hit[0])
    if i == 0:
        return float(c[0])
    # Interpolate within the segment that crosses the target.
    c0, c1, q0, q1 = c[i - 1], c[i], q[i - 1], q[i]
    return float(c0 + (target_quality - q0) * (c1 - c0) / (q1 - q0))


def cpt(
    cost: Sequence[float] | FloatArray,
    quality: Sequence[float] | FloatArray,
    q_weak: float,
    q_strong: float,
    pgr_target: float,
) -> float:
    """Call-performance threshold: the cost needed to recover ``pgr_target`` of the gap."""
    return cost_to_reach(cost, quality, q_weak + pgr_target * (q_strong - q_weak))


def quality_at(
    cost: Sequence[float] | FloatArray, quality: Sequence[float] | FloatArray, budget: float
) -> float:
    """Quality of the curve at a given cost (linear interpolation between operating points)."""
    c, q = _as_curve(cost, quality)
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
    c, q = _as_curve(cost, quality)
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
