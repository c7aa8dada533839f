"""``adaptive-proxy bench`` as a user runs it: a missing bench extra is one line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Loaded by the child interpreter only (``sitecustomize`` on its PYTHONPATH): the bench extra's
# scikit-learn and threadpoolctl look uninstalled there.
HIDE_BENCH_EXTRA = """
import sys
from importlib.abc import MetaPathFinder


class HideBenchExtra(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("sklearn", "threadpoolctl"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, HideBenchExtra())
"""


def test_without_the_bench_extra_it_says_what_to_install(data_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_BENCH_EXTRA, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy.cli",
            "bench",
            "--suite",
            "game24-gpt4-standard",
            "--quick",
            "--no-live",
            "--no-progress",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)])},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bench needs the bench extra (no module ")
    assert "pip install 'adaptive-proxy[bench]'" in lines[0]


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "bench", *args, "--no-progress"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_online_streams_a_suite_and_writes_its_learning_curve(tmp_path: Path) -> None:
    from tests.bench.online.synthetic import synthetic_suite

    suite_file = tmp_path / "mine.npz"
    synthetic_suite(600, name="mine").save(suite_file)
    out = tmp_path / "out"
    result = _bench(
        tmp_path,
        "--online",
        "--suite-file",
        str(suite_file),
        "--explore",
        "0.05",
        "--feedback",
        "none",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "online-mine-none-explore0.05.json",
        "online-mine-none-explore0.05.png",
    ]
    doc = json.loads((out / "online-mine-none-explore0.05.json").read_text())
    assert {"windows", "final_half_apgr", "static_apgr", "cv_apgr", "explore_cost_share"} <= set(
        doc
    )
    assert [(w["start"], w["end"]) for w in doc["windows"]] == [(0, 200), (200, 400), (400, 600)]
    assert all(set(w) == {"start", "end", "apgr", "static", "labels"} for w in doc["windows"])
    # Exploration alone: only the explored requests are labelled.
    assert doc["windows"][-1]["labels"] == doc["explored_labels"] > 0
    assert 0 < doc["explore_cost_share"] < 0.2
    assert "mine: last-half APGR" in result.stdout


def test_online_refuses_a_suite_it_cannot_stream(tmp_path: Path) -> None:
    result = _bench(tmp_path, "--online", "--suite", "gsm8k-ladder")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --online streams routing suites (routellm-gsm8k, routellm-mmlu, "
        "routellm-mtbench, alpaca-eval-ladder) and multi-sample suites (humaneval-codegen16b, "
        "game24-gpt4-standard, game24-gpt4-cot), not gsm8k-ladder"
    )


def test_an_online_option_without_online_is_refused(tmp_path: Path) -> None:
    result = _bench(tmp_path, "--suite", "routellm-gsm8k", "--explore", "0.05")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --explore, --feedback and --suite-file apply to --online runs only"
    )


def test_live_and_limit_without_online_are_refused(tmp_path: Path) -> None:
    result = _bench(tmp_path, "--suite", "routellm-gsm8k", "--live", "--limit", "300")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --live and --limit apply to --online runs only"


def test_live_refuses_a_suite_the_replay_upstream_cannot_answer(tmp_path: Path) -> None:
    result = _bench(tmp_path, "--online", "--live", "--suite", "alpaca-eval-ladder")
    assert result.returncode == 2
    assert "--live streams the RouteLLM suites' prompts" in result.stderr
