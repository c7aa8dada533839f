"""Sequential best-of-k with a prior learned from its free labels: K-fold on a tiny subset, and
``adaptive-proxy bench --online`` on a multi-sample suite as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.docs import online_multisample
from bench.multisample.free_prior import evaluate_free_prior
from proxy.learn.learner import LearnerSettings

REPO_ROOT = Path(__file__).resolve().parents[3]
PRIORS = ("sequential", "shipped_prior", "free_prior", "free_prior_if_promoted")


def test_every_fold_learns_from_the_other_folds_free_labels_only(data_dir: Path) -> None:
    doc = evaluate_free_prior(
        data_dir,
        "humaneval-codegen16b",
        prompts=range(40),
        n_boot=20,
        settings=LearnerSettings(min_train=5),
        progress=False,
        log=lambda _: None,
    )
    assert doc["n_prompts"] == 40
    # Five folds of eight prompts: each head's labels are the other 32 prompts' requests.
    assert [f["labels"] for f in doc["folds"]] == [32] * 5
    assert all(f["fitted"] for f in doc["folds"])
    assert all(f["samples_drawn"] >= f["labels"] for f in doc["folds"])
    assert set(PRIORS) <= set(doc["methods"])
    free = doc["methods"]["free_prior"]["saved_at_equal_quality"]
    none = doc["methods"]["sequential"]["saved_at_equal_quality"]
    met = all(
        n is None or (f is not None and f >= n - 1e-9)
        for f, n in zip(free.values(), none.values(), strict=True)
    )
    assert doc["goal_met"] is met
    assert doc["learner"]["choice"]["how"] == "given"
    assert doc["stop_rule"]["round_size"] == "1"


def test_bench_online_on_a_multisample_suite_writes_its_result(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy.cli",
            "bench",
            "--online",
            "--suite",
            "game24-gpt4-cot",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "online-multisample.json").read_text())
    suite = doc["suites"]["game24-gpt4-cot"]
    # 100 puzzles, five folds: every head learns from 80 requests' free labels.
    assert [f["labels"] for f in suite["folds"]] == [80] * 5
    assert suite["learner"]["choice"]["candidate"] == "default"
    assert "| game24-gpt4-cot | learned from free labels |" in result.stdout
    table = online_multisample.table({"online-multisample": doc})
    assert table.splitlines()[2].startswith("| game24-gpt4-cot | 100 | 80 |")
