"""The online blocks say what the committed results say, and change when they do."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.docs import online
from bench.docs.format import StaleClaimError

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"


def _results() -> dict[str, Any]:
    return {
        name.removesuffix(".json"): json.loads((RESULTS / name).read_text(encoding="utf-8"))
        for name in online.SOURCES
    }


def test_the_table_has_one_row_per_suite_with_its_goal_and_commands() -> None:
    lines = online.table(_results()).splitlines()
    assert len(lines) == 2 + len(online.SUITES)
    for suite, line in zip(online.SUITES, lines[2:], strict=True):
        assert line.startswith(f"| {suite} |")
        assert f"`adaptive-proxy bench --suite {suite} --online`" in line


def test_a_suite_that_misses_its_goal_is_named_with_the_shortfall() -> None:
    results = copy.deepcopy(_results())
    doc = results["online-routellm-gsm8k"]
    doc["goals"]["final_half_vs_static"]["margin"] = -0.031
    text = online.findings(results)
    assert "it misses on routellm-gsm8k" in text
    assert "0.031 against static + 0.05" in text
    assert "| routellm-gsm8k |" in online.table(results)
    assert "missed by 0.031" in online.table(results).splitlines()[2]


def _live_results() -> dict[str, Any]:
    return {
        name.removesuffix(".json"): json.loads((RESULTS / name).read_text(encoding="utf-8"))
        for name in online.LIVE_SOURCES
    }


def test_the_live_line_quotes_the_live_run_beside_the_simulator() -> None:
    results = _live_results()
    run, sim = results["online-routellm-gsm8k-live"], results["online-routellm-gsm8k"]
    text = online.live(results)
    assert (
        "`adaptive-proxy bench --suite routellm-gsm8k --online --live --out bench/results`" in text
    )
    assert f"reaches {run['final_half_apgr']:.3f}" in text
    assert f"against the simulator's {sim['final_half_apgr']:.3f}" in text


def test_the_live_line_refuses_a_gap_the_promotion_rule_does_not_explain() -> None:
    results = copy.deepcopy(_live_results())
    run = results["online-routellm-gsm8k-live"]
    run["live"]["simulator_same_learner"]["final_half_apgr"] = run["final_half_apgr"] + 0.5
    with pytest.raises(StaleClaimError):
        online.live(results)
