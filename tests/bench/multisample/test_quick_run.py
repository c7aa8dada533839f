"""``adaptive-proxy bench --suite humaneval-codegen16b --quick`` into a temp dir: the result
schema checks rely on, figures that agree with one another, the live operating points, and what
the command prints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from bench.cli import main

METHODS = ("uniform", "adaptive", "sequential", "adaptive_sequential", "oracle")
KS = ("2", "4", "8", "16")
REPO_ROOT = Path(__file__).resolve().parents[3]


class QuickRun(NamedTuple):
    out: Path
    doc: dict[str, Any]
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def quick(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """The command as a user runs it, in its own process: its output is part of the result."""
    out = tmp_path_factory.mktemp("ms")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy.cli",
            "bench",
            "--suite",
            "humaneval-codegen16b",
            "--quick",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "--no-progress",
            "--bootstrap",
            "50",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "humaneval-codegen16b.json").read_text())
    return QuickRun(out, doc, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def run(quick: QuickRun) -> tuple[Path, dict[str, Any]]:
    return quick.out, quick.doc


def test_it_ends_with_the_headline_and_the_whole_run_s_time(quick: QuickRun) -> None:
    lines = quick.stdout.splitlines()
    header = lines.index("samples saved at equal quality versus uniform best-of-k:")
    table = lines[header + 1 : lines.index("", header)]
    assert table[0].startswith("| suite | method | saved vs uniform k=4 |")
    assert {row.split(" | ")[1] for row in table[2:]} >= {"adaptive", "sequential", "oracle"}
    assert all(row.startswith("| humaneval-codegen16b (oracle verifier) |") for row in table[2:])
    finished = [ln for ln in lines if ln.startswith("bench finished in ")]
    assert len(finished) == 1 and lines.index(finished[0]) > header
    assert lines[-1].startswith("results written to ")


def test_its_own_loopback_proxy_does_not_warn_about_server_auth(quick: QuickRun) -> None:
    assert quick.doc["live"]["checks"]  # the proxy did start and serve
    assert "server.auth" not in quick.stderr + quick.stdout


def test_result_schema(run: tuple[Path, dict[str, Any]]) -> None:
    out, doc = run
    assert isinstance(doc["n_prompts"], int) and doc["n_prompts"] > 0
    assert set(doc["uniform_quality"]) == {"1", "2", "4", "8", "16"}
    assert set(doc["methods"]) == set(METHODS)
    for name, method in doc["methods"].items():
        assert all(len(point) == 2 for point in method["curve"]), name
        assert set(method["saved_at_equal_quality"]) == set(KS), name
        for value in method["saved_at_equal_quality"].values():
            assert value is None or value <= 1.0, name  # signed: below 0 costs more
    assert (out / "multisample.png").stat().st_size > 1000
    report = (out / "REPORT.md").read_text()
    assert report.splitlines()[0] == "# adaptive-proxy cost/quality benchmark"
    assert "samples saved at equal quality versus uniform best-of-k" in report
    assert "oracle verifier" in report and "up to 50%" in report


def test_figures_agree(run: tuple[Path, dict[str, Any]]) -> None:
    _, doc = run
    uniform = doc["methods"]["uniform"]
    qualities = [doc["uniform_quality"][k] for k in ("1", "2", "4", "8", "16")]
    assert qualities == sorted(qualities)  # best-of-k with an exact verifier never gets worse
    assert all(v == 0.0 for v in uniform["saved_at_equal_quality"].values())
    curve = dict((round(s), q) for s, q in uniform["curve"])
    assert curve[8] == pytest.approx(doc["uniform_quality"]["8"], abs=1e-4)
    mc = doc["stop_rule"]["monte_carlo_check"]  # the proxy's rule, run, agrees with the exact
    assert abs(mc["mean_samples"] - mc["exact_mean_samples"]) < 4 * mc["mean_samples_se"] + 1e-9
    assert abs(mc["quality"] - mc["exact_quality"]) < 4 * mc["quality_se"] + 1e-9


def test_live_points_match_the_offline_decisions(run: tuple[Path, dict[str, Any]]) -> None:
    _, doc = run
    assert doc["live"]["error"] is None
    checks = doc["live"]["checks"]
    assert {c["policy"] for c in checks} >= {"uniform-1", "uniform-8", "sequential-c8"}
    assert {c["method"] for c in checks} == {
        "uniform",
        "adaptive",
        "sequential",
        "adaptive_sequential",
    }
    for c in checks:
        assert c["requests"] == doc["n_prompts"]
        if c["method"] in ("uniform", "adaptive"):  # n is decided up front: exactly as offline
            assert c["n_mismatches"] == 0, c
        else:  # n is decided round by round: the realised mean within its exact error
            assert c["n_mismatches"] is None
            assert c["mean_samples_se"] > 0, c
        gap = abs(c["mean_samples_live"] - c["mean_samples_offline"])
        assert gap <= 4 * c["mean_samples_se"] + 1e-9, c
        assert abs(c["quality_live"] - c["quality_offline"]) <= 4 * c["quality_se"] + 1e-9, c


def test_without_out_it_writes_a_new_folder_and_says_where(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = Path(__file__).resolve().parents[3] / "bench" / "results"
    before = {p.name: p.stat().st_mtime_ns for p in committed.glob("*")}
    code = main(
        [
            "--suite",
            "game24-gpt4-standard",
            "--quick",
            "--data-dir",
            str(data_dir),
            "--no-live",
            "--no-progress",
            "--bootstrap",
            "20",
        ]
    )
    assert code == 0
    line = next(
        ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("results written to ")
    )
    written = Path(line.removeprefix("results written to ").split(" (report: ")[0])
    try:
        assert written.resolve() != committed.resolve()
        doc = json.loads((written / "game24-gpt4-standard.json").read_text())
        assert doc["verifier"] == "game24-checker" and not doc["oracle_verifier"]
        assert doc["live"]["checks"] == []
    finally:
        shutil.rmtree(written)
    assert {p.name: p.stat().st_mtime_ns for p in committed.glob("*")} == before
