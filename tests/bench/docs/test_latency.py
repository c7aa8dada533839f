"""The overhead block: bench/results/latency.json as the README's and docs/overhead.md's table."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from bench.docs.latency import overhead_table
from bench.docs.run import regenerate

ROOT = Path(__file__).resolve().parents[3]
LATENCY = ROOT / "bench" / "results" / "latency.json"


def _run() -> dict[str, Any]:
    run: dict[str, Any] = json.loads(LATENCY.read_text(encoding="utf-8"))
    return run


def test_the_table_shows_each_path_against_the_floor_with_its_targets() -> None:
    run = _run()
    table = overhead_table({"latency": run})
    for label in ("passthrough", "hash predictor", "ONNX predictor"):
        assert label in table
    onnx = run["modes"]["onnx"]
    ratio = f"{onnx['vs_floor']['rps_c32_vs_floor']:.2f}×"
    verdict = "met" if onnx["targets"]["rps_c32_vs_floor"]["pass"] else "missed"
    assert f"{ratio} ({verdict}: ≥ 0.7)" in table
    assert run["machine"]["cpu"] in table


def test_a_new_run_changes_the_table_and_the_check_names_the_block(tmp_path: Path) -> None:
    run = _run()
    faster = copy.deepcopy(run)
    hash_mode = faster["modes"]["hash"]
    hash_mode["vs_floor"]["rps_c32_vs_floor"] = 0.91
    hash_mode["targets"]["rps_c32_vs_floor"]["pass"] = True
    assert "0.91× (met: ≥ 0.7)" in overhead_table({"latency": faster})
    for rel in ("README.md", "docs/overhead.md", "docs/benchmark.md", "docs/policies.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text(encoding="utf-8"), encoding="utf-8")
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    for path in (ROOT / "bench" / "results").glob("*.json"):
        (results / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (results / "REPORT.md").write_text(
        (ROOT / "bench" / "results" / "REPORT.md").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (results / "latency.json").write_text(json.dumps(faster), encoding="utf-8")
    _, differences = regenerate(tmp_path)
    assert {(d.path.as_posix(), d.block) for d in differences} == {
        ("README.md", "latency-overhead"),
        ("docs/overhead.md", "latency-overhead"),
    }
