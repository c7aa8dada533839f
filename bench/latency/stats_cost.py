"""What the dashboard's aggregation costs: ``python -m bench.latency.stats_cost``.

* the request path's one call, :meth:`StatsRecorder.record` (an append), in ns per request;
* the work of one background flush (fold the appended requests into the current slot, read the
  tracked Prometheus series), in ms, with 0 and with ``--requests`` requests appended since the
  last flush; the flush runs it in a thread every ``FLUSH_INTERVAL_S`` seconds.

* building the ``GET /v1/adaptive/stats`` body (in a thread) over one and over six hours of
  busy slots (5 policies, 3 upstreams, every slot filled).

The registry and the alternatives are the proxy's own, for a route, a best-of-k and a cascade
policy with the decision, upstream, budget, sequential and cascade series filled in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from proxy.config.reload import ConfigHolder
from proxy.config.schema import load_config_text
from proxy.http.stats_ctx import FLUSH_INTERVAL_S, SLOT_S, alternatives_of
from proxy.observe.metrics import UPSTREAM_BUCKETS_S, Metrics
from proxy.observe.stats import Slot, StatsRecorder, labels_key
from proxy.observe.stats_store import MemoryStatsStore
from proxy.observe.stats_view import build_stats
from proxy.upstream.pricing import CostModel

POLICY = """
upstreams:
  cheap: {base_url: "http://127.0.0.1:9/v1", model: a, price_in_per_mtok_usd: 0.6,
          price_out_per_mtok_usd: 0.6}
  strong: {base_url: "http://127.0.0.1:9/v1", model: b, price_in_per_mtok_usd: 10,
           price_out_per_mtok_usd: 30}
policies:
  auto: {type: route, cheap: cheap, expensive: strong, threshold: 0.1}
  vote: {type: best_of_k, upstream: cheap, n_max: 8}
  casc: {type: cascade, stages: [{upstream: cheap}, {upstream: strong}]}
"""


def _filled_metrics() -> Metrics:
    metrics = Metrics()
    for policy in ("auto", "vote", "casc"):
        for arm in ("cheap", "expensive"):
            metrics.record_request(policy, arm, 200)
        metrics.observe_decision(policy, 0.001, True)
        metrics.observe_decision(policy, 0.001, False)
        metrics.set_budget(policy, 0.1, 0.3, 0.3)
        metrics.observe_samples(policy, 2)
        metrics.observe_rounds(policy, 2, "vote")
        metrics.observe_cascade(policy, "cheap", False)
    for upstream in ("cheap", "strong"):
        for status in (200, 429, "error"):
            metrics.observe_upstream(upstream, 0.1, status)
        metrics.record_usage(upstream, 10, 10, 0.01)
    return metrics


def _busy_slot(policies: int, upstreams: int) -> Slot:
    """A slot in which every policy and upstream saw traffic."""
    bounds = [*(str(b) for b in UPSTREAM_BUCKETS_S), "+Inf"]
    names = [f"u{u}" for u in range(upstreams)]
    return {
        "p": {
            f"p{k}": {
                "requests": 3,
                "cost_usd": 0.1,
                "samples": 3,
                "cache_hits": 1,
                "arms": {"cheap": 2, "expensive": 1},
                "n": {"1": 3},
            }
            for k in range(policies)
        },
        "c": {
            "adaptive_upstream_seconds_bucket": {
                labels_key({"upstream": u, "status": "200", "le": le}): 3
                for u in names
                for le in bounds
            },
            "adaptive_upstream_seconds_count": {
                labels_key({"upstream": u, "status": "200"}): 3 for u in names
            },
        },
        "g": {"adaptive_budget_lambda": {labels_key({"policy": "p0"}): 0.1}},
    }


def view_ms(window_s: int, repeats: int) -> float:
    """Building the stats body over ``window_s`` of busy slots (5 policies, 3 upstreams)."""
    now = 10_000_000
    slot = _busy_slot(5, 3)
    rows = [("r1", now - window_s + SLOT_S * i, slot) for i in range(window_s // SLOT_S)]
    times = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        build_stats(rows, window_s=window_s, now_s=now, slot_s=SLOT_S, policies={})
        times.append((time.perf_counter_ns() - started) / 1e6)
    return statistics.median(times)


def measure(requests: int, repeats: int) -> dict[str, Any]:
    """The record and flush costs (medians over ``repeats``)."""
    config = load_config_text(POLICY, env={})
    costs = CostModel(config.upstreams)
    metrics = _filled_metrics()
    recorder = StatsRecorder(metrics.registry, alternatives_of(ConfigHolder(config), costs))
    store = MemoryStatsStore(6 * 3600)
    facts = [
        ("auto", "cheap", 1, 200, 0.0002, 120, 80, True, None),
        ("vote", "best_of_4", 4, 200, 0.0008, 120, 320, False, None),
        ("casc", "strong", 2, 200, 0.004, 240, 160, True, None),
    ]
    loop = asyncio.new_event_loop()
    record_ns = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        for i in range(requests):
            recorder.record(*facts[i % 3])  # type: ignore[arg-type]
        record_ns.append((time.perf_counter_ns() - started) / requests)
        loop.run_until_complete(recorder.flush(store))
    fold_ms: dict[int, list[float]] = {0: [], requests: []}
    for count in fold_ms:
        for _ in range(repeats):
            for i in range(count):
                recorder.record(*facts[i % 3])  # type: ignore[arg-type]
            started = time.perf_counter_ns()
            recorder.collect()  # the flush's work, which it runs in a thread
            fold_ms[count].append((time.perf_counter_ns() - started) / 1e6)
            recorder.written()
    loop.close()
    return {
        "record_ns_per_request": statistics.median(record_ns),
        "fold_ms_idle": statistics.median(fold_ms[0]),
        f"fold_ms_{requests}_requests": statistics.median(fold_ms[requests]),
        "view_ms_1h_busy": view_ms(3600, max(1, repeats // 5)),
        "view_ms_6h_busy": view_ms(6 * 3600, max(1, repeats // 5)),
        "flush_interval_s": FLUSH_INTERVAL_S,
        "slot_s": SLOT_S,
    }


def main(argv: list[str] | None = None) -> None:
    """Print the costs (and write them as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per flush")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    figures = measure(args.requests, args.repeats)
    for name, value in figures.items():
        print(f"{name:32s} {value:10.3f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
