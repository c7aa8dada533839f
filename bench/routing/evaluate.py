"""Offline evaluation of one suite from per-prompt predictions and recorded outcomes.

Pair suites (two arms): a threshold sweep on a predicted gain, every distinct operating point,
against random allocation, the uniform arms and the oracle. The x-axis of APGR/CPT is the
realised fraction of requests sent to the expensive arm (RouteLLM's axis); savings and equal-cost
comparisons use realised USD. Ladder suites (many arms): a price-of-compute (λ) sweep, x-axis the
realised USD per request rescaled between the cheapest arm (0) and the highest-quality arm (1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.routing import metrics as m
from bench.routing import random_baseline as rb
from bench.routing.suites import ARMS, Pair, SuiteData

FloatArray = npt.NDArray[np.float64]
GRID = np.linspace(0.0, 1.0, 101)
DECISION_GRID = np.linspace(0.0, 1.0, 21)
SCHEMES = ("cv", "lodo")


def _fin(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _saving(needed_usd: float, all_expensive_usd: float) -> float:
    """1 − needed / all-expensive, 0 when never reached (rounding noise below 1e-9 is 0)."""
    if np.isnan(needed_usd) or all_expensive_usd <= 0:
        return 0.0
    saved = 1.0 - needed_usd / all_expensive_usd
    return saved if saved > 1e-9 else 0.0


def thresholds_for_fractions(scores: FloatArray, fractions: FloatArray) -> list[float]:
    """Thresholds whose ``score >= t`` rule sends (about) each fraction to the expensive arm."""
    s = np.sort(np.asarray(scores, np.float64))[::-1]
    out = []
    for f in fractions:
        k = round(float(f) * len(s))
        if k <= 0:
            out.append(float(s[0] + 1.0))
        elif k >= len(s):
            out.append(float(s[-1] - 1.0))
        else:
            out.append(float(s[k - 1]))
    return out


def pair_curve_stats(
    scores: FloatArray,
    qc: FloatArray,
    qe: FloatArray,
    cc: FloatArray,
    ce: FloatArray,
    *,
    split_ties: bool = False,
) -> dict[str, float]:
    """APGR, CPT(50/80%), saving at equal quality, quality gain at equal cost of one policy."""
    sw = m.threshold_sweep(scores, qc, qe, cc, ce, split_ties=split_ties)
    return sweep_stats(sw, float(qc.mean()), float(qe.mean()), float(cc.sum()), float(ce.sum()))


def sweep_stats(
    sw: m.Sweep, q_w: float, q_s: float, usd_lo: float, usd_hi: float
) -> dict[str, float]:
    """:func:`pair_curve_stats` of a sweep, given the arms' mean quality and total USD."""
    usd_mid = (usd_lo + usd_hi) / 2.0
    q_mid = m.quality_at(sw.cost_usd, sw.quality, usd_mid)
    q_rand_mid = (q_w + q_s) / 2.0
    usd_needed = m.cost_to_reach(sw.cost_usd, sw.quality, q_s)
    return {
        "apgr": m.apgr(sw.frac_expensive, sw.quality, q_w, q_s),
        "cpt50": m.cpt(sw.frac_expensive, sw.quality, q_w, q_s, 0.5),
        "cpt80": m.cpt(sw.frac_expensive, sw.quality, q_w, q_s, 0.8),
        "saved_at_equal_quality": _saving(usd_needed, usd_hi),
        "quality_gain_at_equal_cost": (q_mid - q_rand_mid) / q_rand_mid if q_rand_mid else 0.0,
        "max_quality": float(sw.quality.max()),
    }


def random_pair(
    qc: FloatArray,
    qe: FloatArray,
    usd_per_request_cheap: float,
    usd_per_request_expensive: float,
    *,
    seed: int = 0,
) -> tuple[dict[str, Any], m.Sweep]:
    """Random routing of a pair: every figure of its expected curve (the expectation over
    random routings, in closed form), APGR's spread over random routings, and the curve."""
    n = len(qc)
    q_w, q_s = float(qc.mean()), float(qe.mean())
    usd_lo, usd_hi = usd_per_request_cheap * n, usd_per_request_expensive * n
    sw = rb.expected_random_sweep(n, q_w, q_s, usd_lo, usd_hi)
    spread = rb.random_apgr_interval(qc, qe, seed=seed)
    stats: dict[str, Any] = sweep_stats(sw, q_w, q_s, usd_lo, usd_hi)
    stats.update({k: v for k, v in spread.items() if k != "apgr"})
    return stats, sw


def grid_points(sw: m.Sweep, qc: FloatArray, qe: FloatArray) -> list[dict[str, float | None]]:
    """The sweep read at 0, 1, …, 100 % expensive calls (the realised point nearest each)."""
    q_w, q_s = float(qc.mean()), float(qe.mean())
    out = []
    for target in GRID:
        i = int(np.argmin(np.abs(sw.frac_expensive - target)))
        out.append(
            {
                "target_frac": float(target),
                "threshold": _fin(float(sw.thresholds[i])),
                "frac_expensive": float(sw.frac_expensive[i]),
                "quality": float(sw.quality[i]),
                "pgr": float(m.pgr(sw.quality[i], q_w, q_s)),
                "cost_usd_per_request": float(sw.cost_usd[i] / max(len(qc), 1)),
            }
        )
    return out


def evaluate_pair(
    data: SuiteData, pair: Pair, scores: Mapping[str, FloatArray], *, n_boot: int, seed: int = 0
) -> dict[str, Any]:
    """Every figure of one cheap/expensive pair under each prediction scheme."""
    i_c, i_e = data.col(pair.cheap), data.col(pair.expensive)
    qc, qe = data.reward[:, i_c], data.reward[:, i_e]
    cc, ce = data.cost_usd[:, i_c], data.cost_usd[:, i_e]
    n = data.n
    oracle_s = m.oracle_scores(qc, qe)
    out: dict[str, Any] = {
        "cheap": pair.cheap,
        "expensive": pair.expensive,
        "score_output": pair.score_output,
        "quality_cheap": float(qc.mean()),
        "quality_expensive": float(qe.mean()),
        "cost_usd_per_request_cheap": float(cc.mean()),
        "cost_usd_per_request_expensive": float(ce.mean()),
    }
    oracle = pair_curve_stats(oracle_s, qc, qe, cc, ce, split_ties=True)
    random, random_sw = random_pair(qc, qe, float(cc.mean()), float(ce.mean()), seed=seed)
    out["oracle"] = oracle
    out["random"] = random
    out["sweep_oracle"] = grid_points(
        m.threshold_sweep(oracle_s, qc, qe, cc, ce, split_ties=True), qc, qe
    )
    out["sweep_random"] = grid_points(random_sw, qc, qe)
    for scheme, s in scores.items():
        stats = pair_curve_stats(s, qc, qe, cc, ce)
        sw = m.threshold_sweep(s, qc, qe, cc, ce)

        def stat(idx: npt.NDArray[np.int64], s: FloatArray = s) -> dict[str, float]:
            return pair_curve_stats(s[idx], qc[idx], qe[idx], cc[idx], ce[idx])

        ci = {
            k: list(v)
            for k, v in m.bootstrap_cis(stat, n, n_boot=n_boot, seed=seed).items()
            if k != "max_quality"
        }
        saved_o = oracle["saved_at_equal_quality"]
        out[scheme] = {
            **{k: _fin(v) for k, v in stats.items()},
            "ci95": ci,
            "oracle_saving_captured": (
                stats["saved_at_equal_quality"] / saved_o if saved_o > 0 else None
            ),
            "sweep": grid_points(sw, qc, qe),
            "n_operating_points": len(sw.thresholds),
        }
    return out


def decisions_bits(scores: FloatArray) -> list[str]:
    """Per prompt, the decision (1 = expensive) at each :data:`DECISION_GRID` point."""
    ths = thresholds_for_fractions(scores, DECISION_GRID)
    bits = np.stack([scores >= t for t in ths], axis=1)
    return ["".join("1" if b else "0" for b in row) for row in bits]


def _lambda_grid() -> FloatArray:
    return np.concatenate([[0.0], np.logspace(-3, 7, 400), [np.inf]])


def _ladder_curve(
    predicted: FloatArray, data: SuiteData, est: FloatArray
) -> tuple[FloatArray, FloatArray, list[m.LadderPoint]]:
    lams = _lambda_grid()
    finite = [x if np.isfinite(x) else 1e30 for x in lams]
    pts = m.ladder_sweep(predicted, data.reward, data.cost_usd, est, finite)
    return (np.asarray([p.cost_usd for p in pts]), np.asarray([p.quality for p in pts]), pts)


def _on_unit(cost_norm: FloatArray, quality: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The curve read on [0, 1] (flat beyond its own ends: a policy cannot do better there)."""
    c, q = m.upper_envelope(cost_norm, quality)
    return GRID, np.interp(GRID, c, q)


def ladder_stats(
    predicted: FloatArray,
    data: SuiteData,
    est: FloatArray,
    lo_usd: float,
    hi_usd: float,
    q_lo: float,
    q_hi: float,
) -> dict[str, Any]:
    """APGR/CPT on normalised cost, and the curve, of one ladder policy."""
    usd, q, pts = _ladder_curve(predicted, data, est)
    x, y = _on_unit(m.normalise_cost(usd, lo_usd, hi_usd), q)
    c_env, q_env = m.upper_envelope(usd, q)
    needed = m.cost_to_reach(c_env, q_env, q_hi)
    return {
        "apgr": m.apgr(x, y, q_lo, q_hi),
        "cpt50": m.cpt(x, y, q_lo, q_hi, 0.5),
        "cpt80": m.cpt(x, y, q_lo, q_hi, 0.8),
        "saved_at_equal_quality": _saving(needed, hi_usd),
        "curve": [
            {
                "lambda": p.lam,
                "cost_usd_per_request": p.cost_usd,
                "quality": p.quality,
                "arm_counts": list(p.arm_counts),
            }
            for p in pts
        ],
        "_usd": usd,
        "_q": q,
    }


def evaluate_ladder(
    data: SuiteData, preds: Mapping[str, FloatArray], *, n_boot: int, seed: int = 0
) -> dict[str, Any]:
    """The price-of-compute ladder against the best single arm at each budget and the oracle.

    ``preds[scheme]`` is (prompts × arms) of predicted rewards in ``data.arm_keys`` order.
    """
    est = data.cost_usd.mean(axis=0)
    quality = data.reward.mean(axis=0)
    lo = int(np.argmin(est))
    hi = int(np.argmax(quality))
    lo_usd, hi_usd = float(est[lo]), float(est[hi])
    q_lo, q_hi = float(quality[lo]), float(quality[hi])
    arms = [
        {
            "arm": k,
            "label": ARMS[k].label,
            "quality": float(quality[j]),
            "cost_usd_per_request": float(est[j]),
        }
        for j, k in enumerate(data.arm_keys)
    ]
    out: dict[str, Any] = {
        "arms": arms,
        "reference_low": data.arm_keys[lo],
        "reference_high": data.arm_keys[hi],
    }
    oracle = ladder_stats(data.reward, data, est, lo_usd, hi_usd, q_lo, q_hi)
    out["random"] = rb.random_apgr_interval(data.reward[:, lo], data.reward[:, hi], seed=seed)
    out["oracle"] = {k: v for k, v in oracle.items() if not k.startswith("_")}
    budgets = sorted(float(c) for c in est)
    for scheme, p in preds.items():
        st = ladder_stats(p, data, est, lo_usd, hi_usd, q_lo, q_hi)

        def lstat(idx: npt.NDArray[np.int64], p: FloatArray = p) -> dict[str, float]:
            sub = SuiteData(
                data.spec,
                [],
                [],
                data.arm_keys,
                data.reward[idx],
                data.cost_usd[idx],
                data.prompt_tokens[idx],
            )
            full = ladder_stats(p[idx], sub, est, lo_usd, hi_usd, q_lo, q_hi)
            return {k: float(full[k]) for k in ("apgr", "cpt50", "cpt80", "saved_at_equal_quality")}

        ci = {
            k: list(v) for k, v in m.bootstrap_cis(lstat, data.n, n_boot=n_boot, seed=seed).items()
        }
        vs_best = []
        c_env, q_env = m.upper_envelope(st["_usd"], st["_q"])
        for b in budgets:
            best = max(float(quality[j]) for j in range(len(est)) if est[j] <= b + 1e-15)
            ok = c_env <= b + 1e-15
            ours = float(q_env[ok].max()) if ok.any() else float("nan")
            vs_best.append(
                {
                    "budget_usd_per_request": b,
                    "best_single_arm_quality": best,
                    "ladder_quality": ours,
                }
            )
        saved_o = oracle["saved_at_equal_quality"]
        out[scheme] = {
            "apgr": st["apgr"],
            "cpt50": _fin(st["cpt50"]),
            "cpt80": _fin(st["cpt80"]),
            "ci95": ci,
            "curve": st["curve"],
            "saved_at_equal_quality": st["saved_at_equal_quality"],
            "oracle_saving_captured": (
                st["saved_at_equal_quality"] / saved_o if saved_o > 0 else None
            ),
            "vs_best_single_arm": vs_best,
        }
    return out
