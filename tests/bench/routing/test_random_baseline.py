"""Random routing as a baseline: the reported figure is its expectation, checked against every
possible routing of a small suite, and its interval is what single random routings score."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.routing.evaluate import evaluate_ladder, evaluate_pair
from bench.routing.matched_quality import whole_arm_mix
from bench.routing.metrics import apgr, threshold_sweep
from bench.routing.random_baseline import random_apgr_draws, whole_arm_mix_draws
from bench.routing.suites import Pair, SuiteData, SuiteSpec

QC = np.asarray([0.0, 1.0, 0.0, 0.5, 1.0, 0.0])
QE = np.asarray([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
CC = np.full(6, 1.0)
CE = np.full(6, 10.0)
PAIR = Pair("main", "cheap", "expensive", "gain")


def _suite(reward: np.ndarray, cost: np.ndarray, arms: tuple[str, ...]) -> SuiteData:
    n = reward.shape[0]
    spec = SuiteSpec("tiny", "tiny", "a hand-made suite", "accuracy", pairs=(PAIR,))
    return SuiteData(spec, [str(i) for i in range(n)], [], arms, reward, cost, np.ones(n, np.int64))


def _every_routing() -> tuple[np.ndarray, np.ndarray]:
    """APGR and the quality at each k of all 720 orders in which prompts can go expensive."""
    apgrs, qualities = [], []
    for order in itertools.permutations(range(len(QC))):
        sw = threshold_sweep(-np.asarray(order, float), QC, QE, split_ties=True)
        apgrs.append(apgr(sw.frac_expensive, sw.quality, QC.mean(), QE.mean()))
        qualities.append(sw.quality)
    return np.asarray(apgrs), np.asarray(qualities)


def test_random_pair_figures_are_the_expectation_over_every_routing() -> None:
    data = _suite(np.stack([QC, QE], 1), np.stack([CC, CE], 1), ("cheap", "expensive"))
    out = evaluate_pair(data, PAIR, {}, n_boot=1)
    apgrs, qualities = _every_routing()
    random = out["random"]
    # One random order (or a mean of a few) misses this; the expectation is exact.
    assert random["apgr"] == pytest.approx(apgrs.mean(), abs=1e-12)
    assert random["apgr"] == pytest.approx(0.5, abs=1e-12)
    expected_quality = qualities.mean(0)
    for point in out["sweep_random"]:
        k = round(point["frac_expensive"] * len(QC))
        assert point["quality"] == pytest.approx(expected_quality[k], abs=1e-12)
    # The spread is what single random routings of these prompts score.
    lo, hi = random["apgr_ci95"]
    assert apgrs.min() <= lo < random["apgr"] < hi <= apgrs.max()
    assert lo == pytest.approx(np.percentile(apgrs, 2.5), abs=0.05)
    assert hi == pytest.approx(np.percentile(apgrs, 97.5), abs=0.05)
    assert random["saved_at_equal_quality"] == 0.0  # random reaches GPT-4 quality at all-GPT-4
    assert random["quality_gain_at_equal_cost"] == pytest.approx(0.0, abs=1e-12)


def test_each_random_draw_is_the_apgr_of_a_real_routing() -> None:
    apgrs, _ = _every_routing()
    draws = random_apgr_draws(QC, QE, draws=500, seed=3)
    assert np.min(np.abs(draws[:, None] - apgrs[None, :]), axis=1).max() < 1e-12
    assert draws.mean() == pytest.approx(0.5, abs=0.02)


def test_ladder_random_is_the_expectation_between_its_reference_arms() -> None:
    # The first arm is the cheapest, the last the best: random routes between those two.
    reward = np.stack([QC, (QC + QE) / 2, QE], 1)
    cost = np.tile([1.0, 2.0, 10.0], (len(QC), 1))
    data = _suite(reward, cost, ("6b_finetuning", "175b_finetuning", "strong"))
    out = evaluate_ladder(data, {}, n_boot=1)
    apgrs, _ = _every_routing()
    assert out["random"]["apgr"] == pytest.approx(apgrs.mean(), abs=1e-12)
    lo, hi = out["random"]["apgr_ci95"]
    assert apgrs.min() <= lo < 0.5 < hi <= apgrs.max()


def test_whole_arm_mixing_draws_centre_on_the_hull() -> None:
    rng = np.random.default_rng(0)
    n = 400
    reward = (rng.random((n, 3)) < np.asarray([0.2, 0.7, 0.9])).astype(float)
    cost = np.tile([1.0, 2.0, 10.0], (n, 1)) * rng.uniform(0.5, 1.5, (n, 1))
    arms = [
        {"arm": a, "quality": float(reward[:, j].mean()), "cost_usd_per_request": cost[:, j].mean()}
        for j, a in enumerate(("low", "mid", "high"))
    ]
    xs, ys = whole_arm_mix(arms, "low", "high")
    hull = apgr(xs, ys, reward[:, 0].mean(), reward[:, 2].mean())
    draws = whole_arm_mix_draws(reward, cost, [0, 1, 2], draws=400, seed=1)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    assert lo < hi and lo < hull < hi
    assert draws.mean() == pytest.approx(hull, abs=0.01)
