"""The recorder: appended requests folded into time slots, registry deltas, alternatives."""

from __future__ import annotations

from proxy.observe.metrics import Metrics
from proxy.observe.stats import StatsRecorder
from proxy.observe.stats_store import MemoryStatsStore


class Clock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def recorder(metrics: Metrics, clock: Clock) -> StatsRecorder:
    return StatsRecorder(metrics.registry, lambda *_: (0.5, 4.0), slot_s=5, clock=clock)


def test_requests_land_in_the_slot_of_their_flush() -> None:
    metrics, clock = Metrics(), Clock(1000.0)
    rec = recorder(metrics, clock)
    rec.record("auto", "cheap", 1, 200, 1.0, 10, 5, True, None)
    rec.record("auto", "expensive", 1, 200, 3.0, 10, 5, False, "predictor_timeout")
    rec.record("auto", "cheap", 1, 502, 0.0, None, None, False, None)
    first = rec.collect()
    assert list(first) == [1000]
    p = first[1000]["p"]["auto"]
    assert (p["requests"], p["errors"], p["cost_usd"], p["cache_hits"]) == (3, 1, 4.0, 1)
    assert p["arms"] == {"cheap": 2, "expensive": 1}
    assert p["fallbacks"] == {"predictor_timeout": 1}
    # Errors are not compared: what they would have cost is not known.
    assert (p["compared"], p["cheapest_usd"], p["expensive_usd"]) == (2, 1.0, 8.0)
    rec.written()
    clock.now_s = 1006.0
    rec.record("auto", "cheap", 2, 200, 1.0, 10, 5, False, None)
    second = rec.collect()
    assert sorted(second) == [1000, 1005]  # the ended slot once more, then only the new one
    assert second[1005]["p"]["auto"]["n"] == {"2": 1}
    rec.written()
    assert list(rec.collect()) == [1005]


def test_slots_stay_until_they_are_written() -> None:
    metrics, clock = Metrics(), Clock(1000.0)
    rec = recorder(metrics, clock)
    rec.record("auto", "cheap", 1, 200, 1.0, 10, 5, False, None)
    rec.collect()  # a write that failed: written() not called
    clock.now_s = 1012.0
    rec.record("auto", "cheap", 1, 200, 1.0, 10, 5, False, None)
    slots = rec.collect()
    assert sorted(slots) == [1000, 1010]
    assert slots[1000]["p"]["auto"]["requests"] == 1


def test_registry_deltas_not_totals() -> None:
    metrics, clock = Metrics(), Clock(1000.0)
    metrics.observe_upstream("u", 0.2, 200)  # before the recorder: not counted
    rec = recorder(metrics, clock)
    metrics.observe_upstream("u", 0.2, 200)
    metrics.observe_upstream("u", 3.0, 500)
    metrics.set_budget("auto", 0.7, 0.3, 0.25)
    slot = rec.collect()[1000]
    counts = slot["c"]["adaptive_upstream_seconds_count"]
    assert sorted(counts.values()) == [1.0, 1.0]
    assert slot["g"]["adaptive_budget_lambda"] == {'{"policy":"auto"}': 0.7}
    clock.now_s = 1010.0
    assert rec.collect()[1010].get("c") == {}  # nothing new since


async def test_a_gauge_not_known_yet_is_left_out_of_the_stored_slot() -> None:
    metrics, clock = Metrics(), Clock(1000.0)
    rec = recorder(metrics, clock)
    metrics.set_budget("auto", 0.7, 0.3, float("nan"))  # no request realised yet
    store = MemoryStatsStore(3600, clock=clock)
    await rec.flush(store)
    [(_, _, slot)] = await store.read(0)
    assert "adaptive_budget_realised" not in slot["g"]
    assert slot["g"]["adaptive_budget_lambda"] == {'{"policy":"auto"}': 0.7}
