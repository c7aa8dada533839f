"""``adaptive-proxy bench --quick`` end to end: live proxy, result files, internal consistency."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.report import ROUTELLM_PUBLISHED
from bench.routing.suites import SUITES

pytestmark = pytest.mark.slow  # a whole benchmark run (--quick); .ci/run still runs it
TOP_KEYS = (
    "apgr_cv",
    "apgr_lodo",
    "cpt50_cv",
    "cpt50_lodo",
    "cpt80_cv",
    "cpt80_lodo",
    "apgr_random",
    "apgr_oracle",
    "n_prompts",
)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, str, str]:
    """The command in its own process, as a user runs it: its folder, stdout and stderr."""
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy.cli",
            "bench",
            "--suite",
            *SUITES,  # the multi-sample and chat-ladder suites have their own tests
            "--quick",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "--predictor",
            "features",
            "--no-progress",
            "--bootstrap",
            "20",
        ],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out, result.stdout, result.stderr


@pytest.fixture(scope="module")
def results(quick: tuple[Path, str, str]) -> tuple[Path, dict[str, Any]]:
    out = quick[0]
    return out, {n: json.loads((out / f"{n}.json").read_text()) for n in SUITES}


def test_it_prints_the_routing_table_and_the_run_s_time_without_auth_warnings(
    quick: tuple[Path, str, str],
) -> None:
    _, stdout, stderr = quick
    lines = stdout.splitlines()
    table = lines[lines.index("routing suites:") + 1 :]
    assert table[0].startswith("| suite | n | APGR cv [95% CI] |")
    assert [row.split(" | ")[0].removeprefix("| ") for row in table[2 : 2 + len(SUITES)]] == [
        *SUITES
    ]
    assert sum(ln.startswith("bench finished in ") for ln in lines) == 1
    # One loopback proxy per live suite, each the benchmark's own: none warns it is open.
    assert "server.auth" not in stdout + stderr


def test_every_file_and_key_is_there(results: tuple[Path, dict[str, Any]]) -> None:
    out, res = results
    assert (out / "REPORT.md").is_file()
    for name, r in res.items():
        for key in TOP_KEYS:
            assert isinstance(r[key], int | float), (name, key)
        assert (out / f"{name}.png").stat().st_size > 1000
        lines = (out / f"{name}.records.jsonl").read_text().splitlines()
        assert len(lines) == r["n_prompts"] > 0
        rec = json.loads(lines[0])
        assert {"prompt_id", "predictions", "outcome", "cost_usd"} <= set(rec)
        assert set(rec["predictions"]) == {"cv", "lodo"}
    proc = res["gsm8k-procedures"]
    assert 0.0 <= proc["saved_at_equal_quality"] <= 1.0
    assert isinstance(proc["quality_gain_at_equal_cost"], float)


def test_figures_are_consistent(results: tuple[Path, dict[str, Any]]) -> None:
    _, res = results
    for name, r in res.items():
        # The oracle knows the outcomes: no predictor beats it; random is 0.5 in expectation.
        assert r["apgr_oracle"] >= max(r["apgr_cv"], r["apgr_lodo"]), name
        assert r["apgr_random"] == pytest.approx(0.5, abs=1e-12), name  # the expectation
        lo, hi = r["apgr_random_ci95"]
        assert lo < 0.5 < hi, name
        for scheme in ("cv", "lodo"):
            if r[f"cpt50_{scheme}"] is not None and r[f"cpt80_{scheme}"] is not None:
                assert r[f"cpt50_{scheme}"] <= r[f"cpt80_{scheme}"], name
        if "pairs" in r:
            main_pair = r["pairs"][r["headline_pair"]]
            lo, hi = main_pair["cv"]["ci95"]["apgr"]
            assert lo <= r["apgr_cv"] <= hi, name
            sweep = main_pair["cv"]["sweep"]
            assert sweep[0]["frac_expensive"] == 0.0 and sweep[-1]["frac_expensive"] == 1.0
            assert sweep[0]["quality"] == pytest.approx(main_pair["quality_cheap"])
            assert sweep[-1]["quality"] == pytest.approx(main_pair["quality_expensive"])


def test_live_proxy_decisions_equal_the_offline_computation(
    results: tuple[Path, dict[str, Any]],
) -> None:
    _, res = results
    for name, r in res.items():
        live = r["live"]
        assert live["error"] is None, (name, live["error"])
        assert live["checks"], name
        for check in live["checks"]:
            assert check["requests"] == r["n_prompts"]
            assert check["decision_mismatches"] == 0, (name, check)
            assert check["answer_mismatches"] == 0, (name, check)
            assert check["quality_live"] == pytest.approx(check["quality_offline"])


def test_report_labels_routellms_figures_as_theirs(results: tuple[Path, dict[str, Any]]) -> None:
    out, _ = results
    text = (out / "REPORT.md").read_text()
    assert "theirs" in text and "## Targets" in text
    for name in ROUTELLM_PUBLISHED:
        assert name in text


def test_unknown_data_dir_is_a_clean_error(tmp_path: Path) -> None:
    assert main(["--quick", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
