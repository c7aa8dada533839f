"""Routing and calibration metrics, as the issue (and RouteLLM) define them. numpy only.

* PGR(c) = (q(c) − q_weak) / (q_strong − q_weak), where q(c) is the mean reward when the top-c
  fraction of prompts by predicted ``gain`` goes to the strong arm and the rest to the weak one.
* APGR = trapezoid area under PGR(c) over the sweep (random ≈ 0.5); CPT(x) = the least c with
  PGR(c) ≥ x, interpolated between sweep points. Both come from :mod:`predictor_onnx.routing`,
  shared with the benchmark (a tie group of scores moves together; the oracle splits ties).
* AUC of ``gain`` for the event "only the strong arm succeeds" (reward_strong > reward_weak).
* Brier score and expected calibration error (10 equal-width bins) of each ``p_<arm>``; for graded
  rewards they compare the predicted and the observed expected score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from predictor_onnx.routing import apgr, cpt, threshold_sweep


@dataclass(frozen=True)
class RoutingScores:
    """APGR and CPT(50%)/CPT(80%) of one ranking of prompts."""

    apgr: float
    cpt50: float
    cpt80: float


def routing_scores(
    gain: Any, reward_weak: Any, reward_strong: Any, *, split_ties: bool = False
) -> RoutingScores:
    """APGR, CPT(50%), CPT(80%) of routing by ``gain`` (NaN when the arms tie on average).

    The benchmark's definitions (:mod:`predictor_onnx.routing`): a tie group of ``gain`` moves
    together unless ``split_ties`` (the oracle), and CPT interpolates between sweep points.
    """
    rw = np.asarray(reward_weak, dtype=np.float64)
    rs = np.asarray(reward_strong, dtype=np.float64)
    if len(rw) == 0:
        return RoutingScores(float("nan"), float("nan"), float("nan"))
    sweep = threshold_sweep(gain, rw, rs, split_ties=split_ties)
    q_weak, q_strong = float(rw.mean()), float(rs.mean())
    if abs(q_strong - q_weak) < 1e-12:
        return RoutingScores(float("nan"), float("nan"), float("nan"))
    x, q = sweep.frac_expensive, sweep.quality
    return RoutingScores(
        apgr=apgr(x, q, q_weak, q_strong),
        cpt50=cpt(x, q, q_weak, q_strong, 0.5),
        cpt80=cpt(x, q, q_weak, q_strong, 0.8),
    )


def auc(score: Any, label: Any) -> float:
    """ROC AUC (Mann–Whitney, ties count half); NaN when only one class is present."""
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(label, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def brier(prob: Any, reward: Any) -> float:
    """Mean squared error of a predicted probability (or expected score) against the reward."""
    p = np.asarray(prob, dtype=np.float64)
    r = np.asarray(reward, dtype=np.float64)
    return float(np.mean((p - r) ** 2)) if len(p) else float("nan")


def ece(prob: Any, reward: Any, *, n_bins: int = 10) -> float:
    """Expected calibration error over equal-width bins of the prediction."""
    p = np.asarray(prob, dtype=np.float64)
    r = np.asarray(reward, dtype=np.float64)
    if not len(p):
        return float("nan")
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.sum() * abs(p[sel].mean() - r[sel].mean())
    return float(total / len(p))
