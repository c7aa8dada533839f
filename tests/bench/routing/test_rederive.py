"""``adaptive-proxy bench --rederive``: the random baselines of committed routing results
recomputed from their per-prompt records alone, with the report that shows them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"
SUITES = ("routellm-mtbench", "gsm8k-ladder")


@pytest.mark.skipif(
    not all((RESULTS / f"{s}.records.jsonl").is_file() for s in SUITES),
    reason="committed routing results not present",
)
def test_rederive_brings_the_random_baselines_to_their_expectation(tmp_path: Path) -> None:
    for suite in SUITES:
        for suffix in (".json", ".records.jsonl"):
            shutil.copy(RESULTS / f"{suite}{suffix}", tmp_path / f"{suite}{suffix}")
    assert main(["--rederive", "--out", str(tmp_path)]) == 0
    pair_doc = json.loads((tmp_path / "routellm-mtbench.json").read_text())
    random = pair_doc["pairs"]["main"]["random"]
    assert pair_doc["apgr_random"] == random["apgr"] == pytest.approx(0.5, abs=1e-12)
    lo, hi = pair_doc["apgr_random_ci95"]
    assert 0.3 < lo < 0.5 < hi < 0.7  # 144 prompts: one random routing scores ±0.1 or so
    sweep = pair_doc["pairs"]["main"]["sweep_random"]
    for point in sweep:  # the expected curve: PGR equals the share sent to GPT-4
        assert point["pgr"] == pytest.approx(point["frac_expensive"], abs=1e-9)
    ladder = json.loads((tmp_path / "gsm8k-ladder.json").read_text())
    whole = ladder["apgr_random_whole_arms"]
    lo_w, hi_w = ladder["apgr_random_whole_arms_ci95"]
    assert lo_w < whole < hi_w and ladder["apgr_random"] == pytest.approx(0.5, abs=1e-12)
    report = (tmp_path / "REPORT.md").read_text()
    assert f"0.500 [{lo:.3f}, {hi:.3f}]" in report
    assert f"{whole:.3f} [{lo_w:.3f}, {hi_w:.3f}] (whole arms)" in report
    assert (tmp_path / "routellm-mtbench.png").stat().st_size > 1000


def test_rederive_needs_an_existing_results_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--rederive", "--out", str(tmp_path / "missing")]) == 2
    assert "--rederive needs --out" in capsys.readouterr().out
