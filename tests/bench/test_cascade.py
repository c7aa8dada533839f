"""The offline cascade analysis (``python -m bench.cascade``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cascade import CASES, main, run, saved_at_equal_quality

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


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


def test_the_command_writes_its_json(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cascade.json"
    assert main(["--data-dir", str(data_dir), "--bootstrap", "5", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["bootstrap"] == 5
    assert len(written["cases"]) == len(CASES)


def test_help_names_the_data_lookup_order() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.cascade", "--help"],
        cwd=RESULTS.parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "$ADAPTIVE_DATA_DIR, else the bundled copy" in " ".join(result.stdout.split())
    assert "shared/data" not in result.stdout
