"""The added-latency benchmark of sequential rounds and cascades (a tiny run)."""

from __future__ import annotations

from pathlib import Path

from bench.cascade.evidence_latency import PAIRS, format_table, measure


async def test_a_small_run_reports_every_policy(data_dir: Path) -> None:
    result = await measure(data_dir, prompts=3, ttft_ms=20.0, per_token_ms=0.0, concurrency=3)
    assert [r["policy"] for r in result["rows"]] == list(PAIRS)
    for row in result["rows"]:
        # Every policy makes at least the direct call's one round trip of 20 ms.
        assert row["latency_ms_p50"] >= 20.0
        assert row["latency_ms_p50"] <= row["latency_ms_p95"]
    sequential = next(r for r in result["rows"] if r["policy"] == "sequential-vote")
    assert sequential["mean_rounds"] >= 1.0
    for policy, cap in (("code-sequential-c8", 8), ("code-sequential-c16", 16)):
        row = next(r for r in result["rows"] if r["policy"] == policy)
        assert row["reference"] == "direct-code"
        assert 1.0 <= row["mean_rounds"] == row["mean_samples"] <= cap  # rounds of one sample
    assert "| cascade (agreement rule, Mixtral + 6B → GPT-4) | one Mixtral call (" in (
        format_table(result)
    )
