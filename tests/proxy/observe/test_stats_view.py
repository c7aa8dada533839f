"""The stats body from slots of several replicas: sums, series points, quantiles, budgets."""

from __future__ import annotations

import pytest

from proxy.observe.stats import labels_key
from proxy.observe.stats_view import build_stats, quantile, step_for


def slot(requests: int, cost_usd: float, *, lam: float | None = None) -> dict[str, object]:
    out: dict[str, object] = {
        "p": {
            "auto": {
                "requests": requests,
                "cost_usd": cost_usd,
                "samples": requests,
                "cache_hits": 1,
                "arms": {"cheap": requests},
                "n": {"1": requests},
            }
        },
        "c": {
            "adaptive_upstream_seconds_count": {
                labels_key({"upstream": "u", "status": "200"}): requests,
                labels_key({"upstream": "u", "status": "error"}): 1,
            },
            "adaptive_upstream_seconds_bucket": {
                labels_key({"upstream": "u", "status": "200", "le": "0.1"}): requests,
                labels_key({"upstream": "u", "status": "200", "le": "+Inf"}): requests,
            },
        },
    }
    if lam is not None:
        out["g"] = {"adaptive_budget_lambda": {labels_key({"policy": "auto"}): lam}}
    return out


def test_step_gives_about_sixty_points() -> None:
    assert step_for(3600, 5) == 60
    assert step_for(300, 5) == 5
    assert step_for(7, 5) == 5


def test_quantile_interpolates_within_a_bucket() -> None:
    buckets = {0.1: 50.0, 1.0: 100.0, float("inf"): 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 0.75) == pytest.approx(0.55)
    assert quantile({float("inf"): 3.0}, 0.5) == 0.0
    assert quantile({}, 0.5) is None


def test_replicas_and_slots_are_summed_and_binned() -> None:
    rows = [
        ("r1", 1000, slot(2, 1.0, lam=0.2)),
        ("r2", 1000, slot(3, 2.0, lam=0.4)),
        ("r1", 1005, slot(1, 0.5, lam=0.6)),
        ("r1", 100, slot(9, 9.0)),  # before the window
    ]
    body = build_stats(
        rows, window_s=60, now_s=1010, slot_s=5, policies={"auto": {"type": "route"}}
    )
    auto = body["policies"]["auto"]
    assert (auto["requests"], auto["cost_usd"]) == (6, 3.5)
    assert auto["cache"] == {"hits": 3, "misses": 3, "hit_rate": 0.5}
    assert auto["type"] == "route"
    points = {p["t"]: p["requests"] for p in auto["series"] if p["requests"]}
    assert points == {1000: 5, 1005: 1}
    # λ: the mean over replicas of each one's latest value.
    assert auto["budget"]["lambda"] == pytest.approx((0.6 + 0.4) / 2)
    u = body["upstreams"]["u"]
    assert (u["calls"], u["errors"]) == (9, 3)
    assert body["replicas"] == ["r1", "r2"]
