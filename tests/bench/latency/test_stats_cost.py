"""bench.latency.stats_cost: the figures it prints are measured, for the counts asked."""

from __future__ import annotations

import json
from pathlib import Path

from bench.latency.stats_cost import main, measure


def test_measures_record_and_flush() -> None:
    figures = measure(requests=30, repeats=2)
    assert figures["record_ns_per_request"] > 0
    assert figures["fold_ms_idle"] > 0
    assert figures["fold_ms_30_requests"] > 0
    assert figures["slot_s"] == 5
    assert 0 < figures["view_ms_1h_busy"] < figures["view_ms_6h_busy"]


def test_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    main(["--requests", "10", "--repeats", "1", "--json", str(out)])
    assert set(json.loads(out.read_text())) >= {"record_ns_per_request", "fold_ms_10_requests"}
