"""``adaptive-proxy bench --online --live``: the stream through a real proxy and learner process.

The suite is routellm-gsm8k's real recorded prompts, outcomes and costs (so the replay upstream
answers every request), with a prior that knows nothing and embeddings that hold each prompt's
recorded outcomes: a head fitted on a few hundred labels must beat the prior, so the real
``adaptive-proxy learn`` process promotes one and the proxy reports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.online.suite import OnlineSuite
from bench.routing.suites import ARMS, SUITES, build_suite
from recorded_data.records import load_records

REPO_ROOT = Path(__file__).resolve().parents[3]
DIM = 384


def _informative_gsm8k(data_dir: Path) -> OnlineSuite:
    spec = SUITES["routellm-gsm8k"]
    pair = spec.pairs[0]
    data = build_suite(spec, load_records(data_dir))
    cols = [data.col(pair.cheap), data.col(pair.expensive)]
    reward = data.reward[:, cols]
    n = len(data.prompt_ids)
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((n, DIM)) * 0.05
    embedding[:, 0] = reward[:, 0] - 0.5
    embedding[:, 1] = reward[:, 1] - 0.5
    prior = np.tile([0.6, 0.7], (n, 1))
    return OnlineSuite(
        name="routellm-gsm8k",
        prompt_ids=tuple(data.prompt_ids),
        embedding=embedding.astype(np.float32),
        prior=prior,
        reward=reward,
        cost_usd=data.cost_usd[:, cols],
        arm_models=(ARMS[pair.cheap].model, ARMS[pair.expensive].model),
        cv_apgr=None,
    )


def test_the_live_stream_promotes_a_head_the_proxy_reports(tmp_path: Path, data_dir: Path) -> None:
    suite_file = tmp_path / "gsm8k.npz"
    _informative_gsm8k(data_dir).save(suite_file)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--online",
            "--live",
            "--suite-file",
            str(suite_file),
            "--limit",
            "300",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "--no-progress",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads((out / "online-routellm-gsm8k-live.json").read_text())
    assert (out / "online-routellm-gsm8k-live.png").is_file()
    assert doc["mode"] == "live"
    for key in ("windows", "final_half_apgr", "static_apgr", "cv_apgr", "explore_cost_share"):
        assert key in doc
    assert [(w["start"], w["end"]) for w in doc["windows"]] == [(0, 200), (200, 300)]
    # Every answer was labelled with both arms' recorded rewards through the feedback endpoint.
    learning = doc["live"]["final_learning"]
    assert learning["labels"]["feedback"] == 300
    assert doc["windows"][-1]["labels"] == 300
    # GET /v1/adaptive/learning reported a learned head in force, not the prior.
    assert learning["promoted_at"] is not None
    assert learning["model_version"] != doc["live"]["prior_version"]
    assert doc["live"]["learner_exit_status"] == 0
    # The proxy chose the arms itself and the replay answered each from the chosen arm.
    assert doc["live"]["replay_arm_mismatches"] == 0
    assert 0.0 < doc["live"]["frac_expensive"] < 1.0
    # The simulator beside it streamed the very same requests (same static prior figure).
    beside = doc["live"]["simulator_same_learner"]
    assert beside["static_apgr"] == doc["static_apgr"]
    assert beside["learner"]["rule"]["min_z"] == 2.0  # the learner process's (production) rule
