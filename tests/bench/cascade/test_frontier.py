"""The no-prediction frontier and the equal-quality rule (``bench.cascade.frontier``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.cascade.frontier import (
    at_equal_quality,
    cheapest_mix,
    frontier_cost,
    frontier_summary,
    on_frontier,
    saved_vs_frontier,
)

# Four systems: A cheap and weak, B better for twice A's cost, C worse than B for five times its
# cost (below the hull), D the most accurate. Mean accuracy and mean cost per request.
NAMES = ("A", "B", "C", "D")
QUALITY = np.array([0.2, 0.6, 0.5, 0.9])
COST = np.array([1.0, 2.0, 10.0, 20.0])


def test_the_cheapest_mix_lies_on_the_lower_hull() -> None:
    # 0.5 sits between A and B: 3/4 B + 1/4 A costs 0.25 + 1.5 = 1.75, far below C's 10.
    mix = cheapest_mix(QUALITY, COST, 0.5)
    assert mix is not None
    assert mix.cost == pytest.approx(1.75)
    assert dict(mix.weights) == pytest.approx({0: 0.25, 1: 0.75})
    # 0.8 sits between B and D: 2/3 D + 1/3 B = 14.
    assert frontier_cost(QUALITY, COST, 0.8) == pytest.approx(14.0)
    # Below every system the cheapest one suffices; above every system nothing reaches it.
    assert frontier_cost(QUALITY, COST, 0.1) == pytest.approx(1.0)
    assert math.isnan(frontier_cost(QUALITY, COST, 0.95))
    assert on_frontier(QUALITY, COST).tolist() == [True, True, False, True]


def test_saving_against_the_frontier_at_the_policy_s_quality() -> None:
    # A policy at C's accuracy for 7 a request saves 30% against C but costs four times the
    # A/B mix that reaches the same accuracy: saving 1 − 7/1.75 = −3.
    assert saved_vs_frontier(0.5, 7.0, QUALITY, COST) == pytest.approx(-3.0)
    assert saved_vs_frontier(0.8, 7.0, QUALITY, COST) == pytest.approx(0.5)
    # More accurate than every system: compared with the most accurate one, D.
    assert saved_vs_frontier(0.95, 7.0, QUALITY, COST) == pytest.approx(1 - 7 / 20)
    assert math.isnan(saved_vs_frontier(0.5, float("nan"), QUALITY, COST))


def test_the_summary_names_the_frontier_and_the_mix() -> None:
    summary = frontier_summary(NAMES, QUALITY, COST, 0.5)
    assert [s["system"] for s in summary["systems"] if s["on_frontier"]] == ["A", "B", "D"]
    target = summary["at_all_expensive_accuracy"]
    assert target["cost_usd_per_request"] == pytest.approx(1.75)
    assert {m["system"]: m["weight"] for m in target["mix"]} == pytest.approx(
        {"A": 0.25, "B": 0.75}
    )


def test_equal_quality_needs_zero_in_the_interval_and_no_loss_beyond_the_tolerance() -> None:
    assert at_equal_quality(0.0, (-0.01, 0.024))
    assert at_equal_quality(-0.0005, (-0.01, 0.01))  # within the 0.1 pt tolerance
    # Losses of 0.4 and 0.5 pt whose intervals include 0 are still losses.
    assert not at_equal_quality(-0.004, (-0.01, 0.002))
    assert not at_equal_quality(-0.005, (-0.015, 0.005))
    # A gain whose interval excludes 0 is a quality change too, not equal quality.
    assert not at_equal_quality(0.031, (0.024, 0.044))
