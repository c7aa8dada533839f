"""APGR of a stretch: the suites' APGR without exploration, lowered by exploration's spend."""

from __future__ import annotations

import numpy as np
import pytest

from bench.online.metrics import apgr_with_overhead, stretch_apgr
from predictor_onnx.routing import apgr, threshold_sweep


def test_without_overhead_it_is_the_suites_apgr() -> None:
    rng = np.random.default_rng(0)
    qc = (rng.random(300) < 0.5).astype(float)
    qe = (rng.random(300) < 0.8).astype(float)
    scores = qe - qc + rng.normal(0, 0.8, 300)
    sweep = threshold_sweep(scores, qc, qe)
    expected = apgr(sweep.frac_expensive, sweep.quality, qc.mean(), qe.mean())
    got = apgr_with_overhead(sweep.frac_expensive, sweep.quality, qc.mean(), qe.mean(), 0.0)
    assert got == expected


@pytest.mark.parametrize("delta", [0.05, 0.2, 0.5])
def test_overhead_shifts_the_curve_by_its_cost(delta: float) -> None:
    # Random routing's curve is PGR = x (APGR 1/2); spending δ more on every point leaves
    # ∫_δ^1 (x − δ) dx = (1 − δ)² / 2.
    x = np.linspace(0, 1, 101)
    assert apgr_with_overhead(x, 0.5 + 0.3 * x, 0.5, 0.8, delta) == pytest.approx(
        (1 - delta) ** 2 / 2
    )


def test_a_stretch_counts_exploration_spend_in_expensive_call_units() -> None:
    n = 100
    reward = np.stack([np.zeros(n), np.ones(n)], 1)
    cost = np.tile([1.0, 3.0], (n, 1))  # the gap is 2 per request, 200 in all
    scores = np.arange(n, dtype=float)
    assert stretch_apgr(scores, reward, cost) == pytest.approx(0.5)
    # 20 USD of exploration = δ 0.1.
    assert stretch_apgr(scores, reward, cost, explore_cost_usd=20.0) == pytest.approx(0.405)


def test_equal_arms_have_no_apgr() -> None:
    reward = np.ones((10, 2))
    assert np.isnan(stretch_apgr(np.arange(10.0), reward, np.tile([1.0, 2.0], (10, 1))))
