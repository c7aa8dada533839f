"""The latency benchmark runs end to end (real processes on loopback) and reports every figure.

No timing is asserted: the figures depend on the machine; only their presence and shape are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.latency.load import percentile
from bench.latency.report import DIRECT_FIGURES, FLOOR_RELATIVE_FIGURES, MODE_FIGURES

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    tiny = ["--requests", "24", "--latency-requests", "12", "--ttfb-requests", "6"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.latency",
            "--quick",
            *tiny,
            "--prompts",
            "4",
            "--no-onnx",
            "--auth",
            "--json",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())

    direct = report["direct"]
    assert set(DIRECT_FIGURES) <= set(direct)
    assert set(direct["rps"]) == {"1", "32", "128"}
    assert direct["errors"] == 0
    assert report["modes"]["onnx"] == {"skipped": "disabled with --no-onnx"}
    # hash+auth: every request carried a metered client key, and none was refused.
    floor_targets = {"peak_rss_mb", "ready_s"}
    relative_targets = {
        "p50_over_floor_ms",
        "p99_over_floor_ms",
        "ttfb_over_floor_ms",
        "rps_c32_vs_floor",
    }
    expected_targets = {
        "floor": floor_targets,
        "passthrough": floor_targets | relative_targets,
        "hash": floor_targets | relative_targets | {"cpu_us_per_request"},
        "hash+auth": floor_targets | relative_targets,
    }
    for mode, targets in expected_targets.items():
        figures = report["modes"][mode]
        assert set(MODE_FIGURES) <= set(figures), mode
        assert figures["errors"] == 0, mode
        assert all(figures[name] is not None for name in MODE_FIGURES), mode
        assert set(figures["rps"]) == {"1", "32", "128"}
        assert set(figures["targets"]) == targets, mode
        if mode != "floor":
            assert set(figures["vs_floor"]) == set(FLOOR_RELATIVE_FIGURES), mode
        assert all(isinstance(t["pass"], bool) for t in figures["targets"].values())

    # The stall run: a fresh proxy (hash predictor here), every scenario answered and measured.
    stalls = report["stalls"]
    assert stalls["predictor"] == "hash" and stalls["ready_s"] > 0
    rows = stalls["scenarios"]
    assert set(rows) == {
        "idle",
        "first request",
        "1 MB content",
        "10k tokens",
        "100k tokens",
        "allocate 10k",
    }
    for name, row in rows.items():
        assert row["loop_stall_ms"] is not None, name
        if name != "idle":
            assert row["status"] == 200, name
            assert (row["decision_ms"] is None) == (name == "allocate 10k"), name

    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["software"]["aiohttp"]
    printed = result.stdout
    for label in (
        "added p50 ms",
        "p50 over the floor ms",
        "c=32 req/s x the floor",
        "== mode: passthrough ==",
        "stream TTFB overhead ms",
        "throughput req/s c=128",
        "CPU us/request",
        "peak RSS MB",
        "ready time s",
        "== mode: hash ==",
        "loop stall ms",
        "100k tokens",
    ):
        assert label in printed
    assert "PASS" in printed or "MISS" in printed


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
