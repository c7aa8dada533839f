"""Random routing as a baseline: its expectation in closed form, its spread over random draws.

Random routing sends a random share of the prompts to the expensive arm. Drawing k of n prompts
uniformly, the expected quality is exactly ``q_cheap + (k / n) (q_expensive − q_cheap)`` (and the
expected cost is linear in k likewise), so the expected curve is the straight line between the
two uniform arms and its APGR is exactly 0.5 whenever the arms differ. One draw scores more or
less than that; how much is what ``apgr_ci95`` reports: the 2.5 and 97.5 percentiles of the APGR
of :data:`RANDOM_DRAWS` independent random routings of the same prompts (prompts held fixed; the
spread comes from the routing's own randomness, not from resampling prompts).

Mixing whole arms along a ladder's cost axis is random routing segment by segment along the
upper convex hull of the single arms: the hull is its expected curve, and its spread is
measured the same way (:func:`whole_arm_mix_interval`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from predictor_onnx.routing import FloatArray, Sweep, apgr

__all__ = [
    "INTERVAL_NOTE",
    "RANDOM_DRAWS",
    "expected_random_sweep",
    "random_apgr_draws",
    "random_apgr_interval",
    "whole_arm_mix_draws",
    "whole_arm_mix_interval",
]

RANDOM_DRAWS = 10_000
_CHUNK = 250  # draws per vectorised block: bounded memory on the largest suite (14k prompts)
INTERVAL_NOTE = (
    "apgr = the expectation over random routings (closed form: expected quality is linear in "
    "the share sent to the expensive arm); apgr_ci95 = 2.5 and 97.5 percentiles of the APGR of "
    f"{RANDOM_DRAWS} independent random routings of these prompts (prompts held fixed)"
)


def expected_random_sweep(
    n: int,
    q_cheap: float,
    q_expensive: float,
    cost_cheap_usd: float = 0.0,
    cost_expensive_usd: float = 0.0,
) -> Sweep:
    """The expected curve of random routing at k = 0, 1, …, n prompts sent to the expensive arm.

    ``q_*`` are mean qualities of the two arms, ``cost_*_usd`` their total cost over the n
    prompts; a random policy has no threshold (``thresholds`` are NaN).
    """
    k = np.arange(n + 1)
    share = k / max(n, 1)
    return Sweep(
        thresholds=np.full(n + 1, np.nan),
        n_expensive=k.astype(np.int64),
        frac_expensive=share,
        quality=q_cheap + share * (q_expensive - q_cheap),
        cost_usd=cost_cheap_usd + share * (cost_expensive_usd - cost_cheap_usd),
    )


def random_apgr_draws(
    q_cheap: Sequence[float] | FloatArray,
    q_expensive: Sequence[float] | FloatArray,
    *,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
) -> FloatArray:
    """APGR of ``draws`` random routings (each a uniformly random order of the prompts, swept
    one prompt at a time from all-cheap to all-expensive, as ``threshold_sweep`` does).

    The trapezoidal APGR of an order π is linear in the gains: with g = q_expensive − q_cheap,
    APGR = Σ_j g_π(j) (n − j + ½) / (n Σ g), which is what is computed here (NaN when Σ g = 0).
    """
    gain = np.asarray(q_expensive, np.float64) - np.asarray(q_cheap, np.float64)
    n = len(gain)
    total = float(gain.sum())
    if n == 0 or total == 0.0:
        return np.full(draws, np.nan)
    weights = (n - np.arange(1, n + 1) + 0.5) / n
    rng = np.random.default_rng(seed)
    out = np.empty(draws)
    for start in range(0, draws, _CHUNK):
        size = min(_CHUNK, draws - start)
        orders = rng.permuted(np.tile(np.arange(n), (size, 1)), axis=1)
        out[start : start + size] = gain[orders] @ weights / total
    return out


def _interval(values: FloatArray) -> list[float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [None, None]
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return [float(lo), float(hi)]


def random_apgr_interval(
    q_cheap: Sequence[float] | FloatArray,
    q_expensive: Sequence[float] | FloatArray,
    *,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
) -> dict[str, Any]:
    """``apgr`` (the expectation) and ``apgr_ci95`` (spread over random routings) of a pair."""
    qc = np.asarray(q_cheap, np.float64)
    qe = np.asarray(q_expensive, np.float64)
    sw = expected_random_sweep(len(qc), float(qc.mean()), float(qe.mean()))
    return {
        "apgr": apgr(sw.frac_expensive, sw.quality, float(qc.mean()), float(qe.mean())),
        "apgr_ci95": _interval(random_apgr_draws(qc, qe, draws=draws, seed=seed)),
        "draws": draws,
        "seed": seed,
        "note": INTERVAL_NOTE,
    }


def whole_arm_mix_draws(
    reward: FloatArray,
    cost_usd: FloatArray,
    hull_arms: Sequence[int],
    *,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
) -> FloatArray:
    """APGR of ``draws`` random mixings of whole arms along the hull ``hull_arms`` (column
    indices of ``reward``/``cost_usd``, prompts × arms, from the cheap reference to the
    expensive one): on each segment a random order of the prompts moves them one at a time
    from one arm to the next. Cost axis: realised mean cost rescaled so that the first arm
    costs 0 and the last 1; PGR between the first and the last arm's quality."""
    reward = np.asarray(reward, np.float64)
    cost_usd = np.asarray(cost_usd, np.float64)
    lo, hi = hull_arms[0], hull_arms[-1]
    n = reward.shape[0]
    c0, c1 = float(cost_usd[:, lo].mean()), float(cost_usd[:, hi].mean())
    q0, q1 = float(reward[:, lo].mean()), float(reward[:, hi].mean())
    rng = np.random.default_rng(seed)
    out = np.empty(draws)
    for t in range(draws):
        xs, ys = [np.zeros(1)], [np.full(1, q0)]
        for a, b in itertools.pairwise(hull_arms):
            order = rng.permutation(n)
            step_c = (cost_usd[order, b] - cost_usd[order, a]) / n
            step_q = (reward[order, b] - reward[order, a]) / n
            xs.append(xs[-1][-1] + np.cumsum(step_c) / (c1 - c0))
            ys.append(ys[-1][-1] + np.cumsum(step_q))
        x, y = np.concatenate(xs), np.concatenate(ys)
        # The realised path, in draw order (a sort would reorder points of equal cost).
        pgr = (y - q0) / (q1 - q0)
        out[t] = float(np.sum((pgr[1:] + pgr[:-1]) * np.diff(x)) / 2.0) / float(x[-1] - x[0])
    return out


def whole_arm_mix_interval(
    reward: FloatArray,
    cost_usd: FloatArray,
    hull_arms: Sequence[int],
    *,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
) -> list[float | None]:
    """2.5 and 97.5 percentiles of :func:`whole_arm_mix_draws`."""
    return _interval(whole_arm_mix_draws(reward, cost_usd, hull_arms, draws=draws, seed=seed))
