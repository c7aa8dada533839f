"""APGR of a stretch of the stream, as the routing suites compute it, exploration cost included.

The suites' APGR (:mod:`predictor_onnx.routing`) sweeps a threshold over the per-request scores:
the x-axis is the share of requests sent to the expensive arm, PGR is the share of the quality
gap between the two arms recovered. Exploration runs the other arm beside some requests; its
spend buys no quality for those requests, so it moves the whole curve right by its cost in
expensive-call units, ``δ = explore spend / (Σ expensive cost − Σ cheap cost)`` over the same
requests. :func:`apgr_with_overhead` integrates that shifted curve over [0, 1]: below ``δ`` no
operating point exists (PGR counted 0) and what lies beyond 1 is cut off. With ``δ = 0`` it is
exactly the suites' APGR.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from predictor_onnx.routing import apgr, pgr, threshold_sweep

FloatArray = npt.NDArray[np.float64]


def apgr_with_overhead(
    frac_expensive: FloatArray, quality: FloatArray, q_weak: float, q_strong: float, delta: float
) -> float:
    """APGR of a sweep whose every operating point also spends ``delta`` (expensive-call units)."""
    if delta <= 0:
        return float(apgr(frac_expensive, quality, q_weak, q_strong))
    y = np.asarray(pgr(quality, q_weak, q_strong), np.float64)
    if not np.isfinite(y).all():
        return float("nan")
    x = np.asarray(frac_expensive, np.float64) + delta
    inside = x <= 1.0
    xs = np.concatenate([[0.0], x[inside]])
    ys = np.concatenate([[0.0], y[inside]])
    if not inside.all():
        # The curve crosses cost 1 between the last point inside and the first beyond.
        j = int(np.argmin(inside))
        x0, x1, y0, y1 = x[j - 1], x[j], y[j - 1], y[j]
        xs = np.append(xs, 1.0)
        ys = np.append(ys, y0 + (1.0 - x0) * (y1 - y0) / (x1 - x0))
    else:
        xs, ys = np.append(xs, 1.0), np.append(ys, ys[-1])
    return float(np.sum((ys[1:] + ys[:-1]) * np.diff(xs)) / 2.0)


def stretch_apgr(
    scores: FloatArray,
    reward: FloatArray,
    cost_usd: FloatArray,
    *,
    explore_cost_usd: float = 0.0,
) -> float:
    """APGR of routing ``reward`` ``(n, 2)`` (cheap, expensive) by ``scores``, with the stretch's
    exploration spend as overhead (``nan`` when the two arms' mean rewards are equal)."""
    qc, qe = reward[:, 0], reward[:, 1]
    sweep = threshold_sweep(scores, qc, qe)
    gap_usd = float(cost_usd[:, 1].sum() - cost_usd[:, 0].sum())
    delta = explore_cost_usd / gap_usd if explore_cost_usd > 0 and gap_usd > 0 else 0.0
    return apgr_with_overhead(
        sweep.frac_expensive, sweep.quality, float(qc.mean()), float(qe.mean()), delta
    )


def finite_or_none(value: float) -> float | None:
    """``value`` for JSON (``None`` for NaN or infinity)."""
    return None if value is None or not math.isfinite(value) else float(value)


def rounded(value: Any, digits: int = 6) -> Any:
    """Floats rounded for JSON, recursively; NaN becomes ``None``."""
    if isinstance(value, float | np.floating):
        v = finite_or_none(float(value))
        return None if v is None else round(v, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value
