"""The benchmark's maths against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.routing import metrics as m
from bench.routing.evaluate import pair_curve_stats, thresholds_for_fractions

# Four prompts, scores with a tie; cheap/expensive outcomes chosen so every step differs.
SCORES = [0.9, 0.5, 0.5, 0.1]
QC = [0.0, 1.0, 0.0, 1.0]
QE = [1.0, 1.0, 1.0, 0.0]


def test_threshold_sweep_moves_tied_prompts_together() -> None:
    sw = m.threshold_sweep(SCORES, QC, QE, [1.0] * 4, [10.0] * 4)
    assert sw.n_expensive.tolist() == [0, 1, 3, 4]
    assert sw.frac_expensive.tolist() == [0.0, 0.25, 0.75, 1.0]
    assert sw.quality.tolist() == [0.5, 0.75, 1.0, 0.75]
    assert sw.cost_usd.tolist() == [4.0, 13.0, 31.0, 40.0]
    assert sw.thresholds[0] == math.inf and sw.thresholds[1:].tolist() == [0.9, 0.5, 0.1]


def test_split_ties_gives_one_point_per_prompt() -> None:
    sw = m.threshold_sweep(SCORES, QC, QE, split_ties=True)
    assert sw.n_expensive.tolist() == [0, 1, 2, 3, 4]


def test_pgr() -> None:
    assert m.pgr(np.array([0.5, 0.75, 1.0]), 0.5, 0.75).tolist() == [0.0, 1.0, 2.0]


def test_apgr_hand_computed() -> None:
    # PGR at x = 0, .25, .75, 1 is 0, 1, 2, 1: trapezoids .125 + .75 + .375.
    sw = m.threshold_sweep(SCORES, QC, QE)
    assert m.apgr(sw.frac_expensive, sw.quality, 0.5, 0.75) == pytest.approx(1.25)


def test_apgr_of_the_straight_line_is_one_half() -> None:
    assert m.apgr([0.0, 1.0], [0.2, 0.6], 0.2, 0.6) == pytest.approx(0.5)
    assert m.apgr([0.0, 0.5, 1.0], [0.2, 0.4, 0.6], 0.2, 0.6) == pytest.approx(0.5)


def test_apgr_equals_routellms_auc_formula() -> None:
    x = np.array([0.0, 0.1, 0.4, 0.7, 1.0])
    q = np.array([0.60, 0.70, 0.78, 0.84, 0.85])
    auc = np.trapezoid(q, x)
    weak, strong = np.trapezoid(np.full(5, 0.6), x), np.trapezoid(np.full(5, 0.85), x)
    assert m.apgr(x, q, 0.6, 0.85) == pytest.approx((auc - weak) / (strong - weak))


def test_cpt_interpolates_the_first_crossing() -> None:
    sw = m.threshold_sweep(SCORES, QC, QE)
    # 50% of the gap = quality .625: halfway between (x=0, q=.5) and (x=.25, q=.75).
    assert m.cpt(sw.frac_expensive, sw.quality, 0.5, 0.75, 0.5) == pytest.approx(0.125)
    assert m.cpt(sw.frac_expensive, sw.quality, 0.5, 0.75, 0.8) == pytest.approx(0.2)
    assert math.isnan(m.cpt([0.0, 1.0], [0.5, 0.6], 0.5, 0.75, 0.8))


def test_saved_at_equal_quality() -> None:
    assert m.saved_at_equal_quality([0.0, 0.5, 1.0], [0.5, 0.8, 0.8], 0.8) == pytest.approx(0.5)
    assert m.saved_at_equal_quality([0.0, 1.0], [0.5, 0.79], 0.8) == 0.0


def test_quality_at_interpolates() -> None:
    assert m.quality_at([0.0, 1.0], [0.4, 0.8], 0.25) == pytest.approx(0.5)


def test_pair_stats_of_the_oracle_beat_a_bad_policy() -> None:
    qc, qe = np.array(QC), np.array(QE)
    ones = np.ones(4)
    oracle = pair_curve_stats(m.oracle_scores(qc, qe), qc, qe, ones, 10 * ones, split_ties=True)
    worst = pair_curve_stats(-m.oracle_scores(qc, qe), qc, qe, ones, 10 * ones)
    assert oracle["apgr"] > worst["apgr"]
    # The oracle reaches all-expensive quality (.75) after one expensive call: 13 of 40 USD.
    assert oracle["saved_at_equal_quality"] == pytest.approx(1 - 13 / 40)


def test_bootstrap_ci_constant_and_mean() -> None:
    assert m.bootstrap_ci(lambda idx: 3.0, 10, n_boot=20) == (3.0, 3.0)
    x = np.arange(100, dtype=float)
    lo, hi = m.bootstrap_ci(lambda idx: float(x[idx].mean()), 100, n_boot=300, seed=1)
    assert lo < 49.5 < hi
    assert 40 < lo and hi < 60  # standard error ≈ 2.9
    many = m.bootstrap_cis(
        lambda idx: {"a": float(x[idx].mean()), "b": math.nan}, 100, n_boot=300, seed=1
    )
    assert many["a"] == (lo, hi) and "b" not in many


def test_ladder_sweep_hand_case() -> None:
    predicted = np.array([[0.2, 0.9], [0.5, 0.6]])
    reward = np.array([[0.0, 1.0], [1.0, 1.0]])
    cost = np.array([[1.0, 5.0], [1.0, 5.0]])
    est = np.array([1.0, 5.0])
    # λ=0: both expensive; λ=0.1: prompt 1 (gain .1 < .4) goes cheap; λ=1: both cheap.
    pts = m.ladder_sweep(predicted, reward, cost, est, [0.0, 0.1, 1.0])
    assert [p.arm_counts for p in pts] == [(0, 2), (1, 1), (2, 0)]
    assert [p.quality for p in pts] == [1.0, 1.0, 0.5]
    assert [p.cost_usd for p in pts] == [5.0, 3.0, 1.0]


def test_upper_envelope_and_normalise() -> None:
    c, q = m.upper_envelope(np.array([3.0, 1.0, 2.0]), np.array([0.5, 0.2, 0.6]))
    assert c.tolist() == [1.0, 2.0, 3.0] and q.tolist() == [0.2, 0.6, 0.6]
    assert m.normalise_cost(np.array([1.0, 3.0]), 1.0, 5.0).tolist() == [0.0, 0.5]


def test_thresholds_for_fractions_realise_the_fractions() -> None:
    s = np.array([0.3, 0.1, 0.7, 0.5])
    ths = thresholds_for_fractions(s, np.array([0.0, 0.5, 1.0]))
    assert [float((s >= t).mean()) for t in ths] == [0.0, 0.5, 1.0]
