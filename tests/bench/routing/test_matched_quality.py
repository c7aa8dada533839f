"""The routing headline at matched quality: IRT fit, whole-arm random mixing, saved vs random."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.routing.irt import fit_one_factor_irt
from bench.routing.matched_quality import add_matched_quality, whole_arm_mix
from bench.routing.metrics import apgr

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"


def test_irt_recovers_simulated_items() -> None:
    rng = np.random.default_rng(0)
    a = np.asarray([0.5, 1.0, 2.0, 1.5])
    b = np.asarray([-1.0, 0.0, 1.0, 2.0])
    theta = rng.normal(size=4000)
    p = 1 / (1 + np.exp(-(np.outer(theta, a) + b)))
    y = (rng.random(p.shape) < p).astype(float)
    model = fit_one_factor_irt(y)
    assert np.allclose(model.discrimination, a, atol=0.25)
    assert np.allclose(model.intercept, b, atol=0.25)
    assert np.allclose(model.success_probabilities().mean(0), y.mean(0), atol=0.01)


def test_whole_arm_mix_of_the_gsm8k_ladder() -> None:
    arms = [
        {"arm": "low", "quality": 0.217, "cost_usd_per_request": 0.000047},
        {"arm": "mixtral", "quality": 0.637, "cost_usd_per_request": 0.000101},
        {"arm": "mid", "quality": 0.347, "cost_usd_per_request": 0.001363},
        {"arm": "high", "quality": 0.858, "cost_usd_per_request": 0.004373},
    ]
    xs, ys = whole_arm_mix(arms, "low", "high")
    assert xs[0] == 0.0 and xs[-1] == 1.0 and len(xs) == 3  # the 175B single sample lies under
    # Mixing the 6B model, Mixtral and GPT-4 with no prediction already recovers most of the gap.
    assert apgr(xs, ys, 0.217, 0.858) == pytest.approx(0.82, abs=0.01)


@pytest.mark.skipif(
    not (RESULTS / "routellm-gsm8k.records.jsonl").is_file(),
    reason="committed routing results not present",
)
def test_add_matched_quality_to_the_committed_results(tmp_path: Path) -> None:
    for path in RESULTS.glob("*"):
        if path.name.startswith(("routellm-", "gsm8k-")):
            shutil.copy(path, tmp_path / path.name)
    done = add_matched_quality(tmp_path)
    assert "routellm-gsm8k" in done and "gsm8k-ladder" in done
    doc = json.loads((tmp_path / "routellm-gsm8k.json").read_text())
    assert doc["saved_vs_random_pgr50_cv"] == pytest.approx(1 - doc["cpt50_cv"] / 0.5)
    pair = doc["matched_quality"]["ev_limit"]["pairs"]["main"]
    assert pair["apgr_limit_expected"] > pair["apgr_cv_expected"] > 0.4
    ladder = json.loads((tmp_path / "gsm8k-ladder.json").read_text())
    assert ladder["apgr_random_whole_arms"] == pytest.approx(0.82, abs=0.01)
    lo, hi = ladder["apgr_random_whole_arms_ci95"]
    assert 0.78 < lo < ladder["apgr_random_whole_arms"] < hi < 0.86
