"""The offline cascade analysis (``python -m bench.cascade``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.cascade.frontier import EQUAL_QUALITY_TOLERANCE
from bench.cascade.run import CASES, main, run, saved_at_equal_quality

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "bench" / "results"
# Point estimates do not depend on the bootstrap; intervals do, so only points are compared.
POINT_KEYS = ("saved_at_equal_quality", "saved_vs_frontier", "cost_saved", "delta_quality")


def test_saving_at_equal_quality_on_a_hand_made_cascade() -> None:
    # Four prompts; the cheap answer is right on the first two, the expensive one everywhere.
    # Escalating the last two (score 1) reaches the all-expensive accuracy for
    # cheap stages 4 × 1 + expensive 2 × 10 = 24 against 4 × 10 = 40: 40% saved.
    scores = np.array([0.0, 0.0, 1.0, 1.0])
    qc = np.array([1.0, 1.0, 0.0, 0.0])
    qe = np.ones(4)
    cheap = np.ones(4)
    expensive = np.full(4, 10.0)
    saved = saved_at_equal_quality(scores, qc, qe, cheap, cheap + expensive, expensive)
    assert saved == pytest.approx(0.4)
    # Scores that put the wrong prompts first need every prompt escalated: cost 44 > 40.
    worse = saved_at_equal_quality(1 - scores, qc, qe, cheap, cheap + expensive, expensive)
    assert worse == pytest.approx(-0.1)


def test_the_analysis_on_recorded_data(data_dir: Path) -> None:
    case = next(c for c in CASES if c.spec.stages == ("175b_finetuning", "weak"))
    (result,) = run(data_dir, RESULTS, n_boot=20, cases=[case])
    assert result["prompts"] == 1307
    rule = next(p for p in result["points"] if p["policy"].startswith("agreement rule"))
    assert rule["escalated"] == pytest.approx(1 - result["agreement_rate"])
    policies = {row["policy"] for row in result["curves"]}
    assert "input-only route (prompt prior)" in policies
    for row in result["curves"]:
        lo, hi = row["saved_ci95"]
        assert lo <= row["saved_at_equal_quality"] <= hi or np.isnan(lo)


@pytest.fixture(scope="module")
def recorded(data_dir: Path) -> Mapping[tuple[str, ...], Mapping[str, Any]]:
    """The 175B cascades with a Mixtral and a 6B check, and Mixtral → GPT-4 with a 6B check."""
    stages = [("175b_finetuning", "weak"), ("175b_finetuning", "6b_finetuning")]
    stages.append(("weak", "6b_finetuning"))
    cases = [c for c in CASES if c.spec.stages in stages]
    return {
        r["stages"] and tuple(r["stages"]): r
        for r in run(data_dir, RESULTS, n_boot=40, cases=cases)
    }


def test_the_frontier_holds_the_checker_that_beats_best_of_100(
    recorded: Mapping[tuple[str, ...], Mapping[str, Any]],
) -> None:
    result = recorded[("175b_finetuning", "weak")]
    systems = {s["system"]: s for s in result["frontier"]["systems"]}
    # Mixtral alone is more accurate than 175B best-of-100, for a fraction of its cost ...
    mixtral = systems["weak"]
    assert mixtral["on_frontier"]
    assert mixtral["accuracy"] > result["accuracy"]["all_expensive"]
    assert not systems["175b_verification"]["on_frontier"]
    target = result["frontier"]["at_all_expensive_accuracy"]
    assert target["cost_usd_per_request"] <= mixtral["cost_usd_per_request"]
    assert "weak" in {m["system"] for m in target["mix"]}
    # ... so the cascade that pays 175B and Mixtral before escalating loses against the
    # frontier, whatever it saves against best-of-100.
    for row in (*result["curves"], *result["points"]):
        assert row["saved_vs_frontier"] < 0
        assert row["saved_vs_frontier_ci95"][1] < 0
    best = max(row["saved_at_equal_quality"] for row in result["curves"])
    assert best > 0.3


def test_gpt4_is_its_own_frontier(recorded: Mapping[tuple[str, ...], Mapping[str, Any]]) -> None:
    # GPT-4 is the most accurate single system: at its accuracy the frontier is GPT-4 alone,
    # and a curve's saving against the frontier is its saving against GPT-4.
    result = recorded[("weak", "6b_finetuning")]
    target = result["frontier"]["at_all_expensive_accuracy"]
    assert target["mix"] == [{"system": "strong", "weight": 1.0}]
    for row in result["curves"]:
        assert row["saved_vs_frontier"] == pytest.approx(row["saved_at_equal_quality"])


def test_fixed_points_that_lose_quality_are_not_at_equal_quality(
    recorded: Mapping[tuple[str, ...], Mapping[str, Any]],
) -> None:
    flags = []
    for result in recorded.values():
        for row in result["points"]:
            lo, hi = row["delta_quality_ci95"]
            ok = lo <= 0 <= hi and row["delta_quality"] >= -EQUAL_QUALITY_TOLERANCE
            assert row["equal_quality"] == ok, row["policy"]
            flags.append(ok)
    # The learned threshold loses 0.4 pt on the 175B cascade with a 6B check.
    fixed = recorded[("175b_finetuning", "6b_finetuning")]["points"][1]
    assert fixed["policy"].endswith("fixed threshold from training folds")
    assert fixed["delta_quality"] < -EQUAL_QUALITY_TOLERANCE
    assert not fixed["equal_quality"]
    assert any(flags)


def test_the_command_writes_its_json(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cascade.json"
    assert main(["--data-dir", str(data_dir), "--bootstrap", "5", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["bootstrap"] == 5
    assert written["equal_quality_tolerance"] == EQUAL_QUALITY_TOLERANCE
    assert len(written["cases"]) == len(CASES)
    assert all("frontier" in case for case in written["cases"])
    # The committed results are what the current code computes from the current records.
    committed = json.loads((RESULTS / "cascade.json").read_text(encoding="utf-8"))
    assert len(committed["cases"]) == len(written["cases"])
    for old, new in zip(committed["cases"], written["cases"], strict=True):
        assert _points(old) == pytest.approx(_points(new)), old["cascade"]
    # Every fixed point not at equal quality prints its quality change beside the saving.
    printed = capsys.readouterr().out
    losers = [
        (case["cascade"], row["policy"], row["delta_quality"])
        for case in written["cases"]
        for row in case["points"]
        if not row["equal_quality"]
    ]
    assert losers
    for cascade, policy, delta in losers:
        (line,) = [ln for ln in printed.splitlines() if cascade in ln and policy in ln]
        assert f"at {100 * delta:+.1f} pts (not equal quality)" in line


def _points(case: Mapping[str, Any]) -> list[float]:
    rows = [*case["curves"], *case["points"]]
    return [row[k] for row in rows for k in POINT_KEYS if k in row]


def test_help_names_the_data_lookup_order() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.cascade", "--help"],
        cwd=RESULTS.parents[2],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "$ADAPTIVE_DATA_DIR, else the bundled copy" in " ".join(result.stdout.split())
    assert "shared/data" not in result.stdout
