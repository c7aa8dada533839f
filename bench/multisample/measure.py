"""Samples saved at equal quality versus uniform best-of-k, with bootstrap intervals over prompts.

A method's curve is (mean samples, mean quality) over its operating points. The samples it needs
to reach a quality is read off its frontier (the points that beat every cheaper point, sorted by
mean samples, linear interpolation between neighbours); *saved at equal quality versus uniform
best-of-k* is ``1 − samples needed to reach uniform best-of-k's quality / k``: negative when
the method needs more samples than uniform, ``None`` (reported as ``never``) when its curve
never reaches that quality. *Quality gain at equal mean samples* is the frontier's quality at
k mean samples minus uniform best-of-k's. 95 % intervals: percentile bootstrap over prompts
(each resample recomputes every mean, uniform's included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench.multisample.methods import MethodPoints

__all__ = [
    "HEADLINE_KS",
    "quality_at_samples",
    "samples_to_reach",
    "savings_table",
]

HEADLINE_KS = (2, 4, 8, 16)


def _frontier(samples: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Operating points that beat every cheaper one, sorted by samples (dominated points are
    dropped, so interpolation runs between points a user would actually pick)."""
    order = np.argsort(samples, kind="stable")
    s, q = samples[order], quality[order]
    keep = np.r_[True, q[1:] > np.maximum.accumulate(q)[:-1] + 1e-12]
    return s[keep], q[keep]


def samples_to_reach(samples: np.ndarray, quality: np.ndarray, target: float) -> float | None:
    """Fewest mean samples at which the curve first reaches ``target`` (None if it never does)."""
    s, q = _frontier(np.asarray(samples, float), np.asarray(quality, float))
    hit = np.nonzero(q >= target - 1e-12)[0]
    if hit.size == 0:
        return None
    j = int(hit[0])
    if j == 0:
        return float(s[j])
    frac = (target - q[j - 1]) / (q[j] - q[j - 1])
    return float(s[j - 1] + frac * (s[j] - s[j - 1]))


def quality_at_samples(samples: np.ndarray, quality: np.ndarray, budget: float) -> float | None:
    """The frontier's quality at ``budget`` mean samples (None below the cheapest point)."""
    s, q = _frontier(np.asarray(samples, float), np.asarray(quality, float))
    if budget < s[0] - 1e-12:
        return None
    if budget >= s[-1]:
        return float(q[-1])
    return float(np.interp(budget, s, q))


def _saved(points_s: np.ndarray, points_q: np.ndarray, target: float, k: int) -> float | None:
    need = samples_to_reach(points_s, points_q, target)
    return None if need is None else 1.0 - need / k


def _gain(points_s: np.ndarray, points_q: np.ndarray, target: float, k: int) -> float | None:
    q = quality_at_samples(points_s, points_q, float(k))
    return None if q is None else q - target


def _ci(values: Sequence[float | None]) -> list[float | None]:
    finite = np.asarray([v for v in values if v is not None], float)
    if finite.size < 0.5 * len(values):  # most resamples never reach it: no interval
        return [None, None]
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return [float(lo), float(hi)]


def savings_table(
    methods: Mapping[str, MethodPoints],
    uniform_quality: np.ndarray,
    ks: Sequence[int],
    *,
    n_boot: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Per method: curve, saved at equal quality and quality gain at equal mean samples versus
    uniform best-of-k (``uniform_quality[:, j]`` is best-of-``ks[j]`` per prompt), with 95 % CIs.

    Saved fractions are signed: below 0 when the method needs more mean samples than uniform
    best-of-k to reach its quality, ``None`` when it never reaches it (within its curve).
    """
    rng = np.random.default_rng(seed)
    n_prompts = uniform_quality.shape[0]
    boot = rng.integers(0, n_prompts, size=(n_boot, n_prompts))
    out: dict[str, dict[str, Any]] = {}
    targets = uniform_quality.mean(0)
    boot_targets = uniform_quality[boot].mean(1)  # (n_boot, len(ks))
    for name, pts in methods.items():
        mean_s, mean_q = pts.samples.mean(0), pts.quality.mean(0)
        boot_s, boot_q = pts.samples[boot].mean(1), pts.quality[boot].mean(1)
        saved: dict[str, float | None] = {}
        gain: dict[str, float | None] = {}
        saved_ci: dict[str, list[float | None]] = {}
        gain_ci: dict[str, list[float | None]] = {}
        for j, k in enumerate(ks):
            saved[str(k)] = _saved(mean_s, mean_q, float(targets[j]), k)
            gain[str(k)] = _gain(mean_s, mean_q, float(targets[j]), k)
            draws = [
                _saved(boot_s[b], boot_q[b], float(boot_targets[b, j]), k) for b in range(n_boot)
            ]
            saved_ci[str(k)] = _ci(draws)
            gain_ci[str(k)] = _ci(
                [_gain(boot_s[b], boot_q[b], float(boot_targets[b, j]), k) for b in range(n_boot)]
            )
        reached = [v for v in saved.values() if v is not None]
        out[name] = {
            "curve": [[round(s, 4), round(q, 4)] for s, q in pts.curve()],
            "params": pts.params,
            "saved_at_equal_quality": saved,
            "saved_at_equal_quality_ci95": saved_ci,
            "saved_up_to": max(reached) if reached else None,
            "quality_gain_at_equal_mean_samples": gain,
            "quality_gain_at_equal_mean_samples_ci95": gain_ci,
        }
    return out
