"""Routing curves, one definition for the model card and the benchmark: PGR, APGR, CPT.

RouteLLM (lm-sys/RouteLLM, ``routellm/evals/evaluate.py``) defines
``PGR(c) = (q(c) - q_weak) / (q_strong - q_weak)``, APGR as the trapezoidal area under PGR over
the strong-call fraction, and CPT(x%) as the strong-call fraction at which the quality first
reaches ``q_weak + x (q_strong - q_weak)``, interpolated linearly between sweep points.

Ties: a threshold cannot separate prompts with equal scores, so a predictor's tie group moves to
the strong arm together (one sweep point per distinct score); only an oracle or a randomised
policy splits ties (``split_ties=True``, one point per prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
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


def pgr(quality: float | FloatArray, q_weak: float, q_strong: float) -> FloatArray:
    """Performance gap recovered: 0 at the weak model's quality, 1 at the strong model's."""
    gap = q_strong - q_weak
    q = np.asarray(quality, dtype=np.float64)
    return (q - q_weak) / gap if gap != 0 else np.full_like(q, np.nan)


def as_curve(
    cost: Sequence[float] | FloatArray, quality: Sequence[float] | FloatArray
) -> tuple[FloatArray, FloatArray]:
    """``(cost, quality)`` as float arrays sorted by cost."""
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
    c, q = as_curve(cost, quality)
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
    c, q = as_curve(cost, quality)
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
