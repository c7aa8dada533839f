"""The multi-sample online blocks say what the committed result says, and stop when it changes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.docs import online_multisample
from bench.docs.format import StaleClaimError

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results"


def _results() -> dict[str, Any]:
    path = RESULTS / "online-multisample.json"
    return {"online-multisample": json.loads(path.read_text(encoding="utf-8"))}


def test_the_table_has_one_row_per_suite_with_its_goal() -> None:
    lines = online_multisample.table(_results()).splitlines()
    suites = list(_results()["online-multisample"]["suites"])
    assert suites == ["humaneval-codegen16b", "game24-gpt4-standard", "game24-gpt4-cot"]
    assert [line.split(" | ")[0] for line in lines[2:]] == [f"| {s}" for s in suites]
    assert all(line.endswith("| met |") for line in lines[2:])


def test_a_learned_prior_that_saves_less_stops_the_generator() -> None:
    results = copy.deepcopy(_results())
    doc = results["online-multisample"]["suites"]["game24-gpt4-cot"]
    doc["methods"]["free_prior"]["saved_at_equal_quality"]["8"] -= 0.02
    doc["goal_met"] = False
    assert online_multisample.table(results).splitlines()[-1].endswith("| missed |")
    with pytest.raises(StaleClaimError, match="only as equality"):
        online_multisample.findings(results)


def test_a_promoted_head_stops_the_sentence_that_none_is() -> None:
    results = copy.deepcopy(_results())
    results["online-multisample"]["suites"]["humaneval-codegen16b"]["folds"][0]["promoted"] = True
    with pytest.raises(StaleClaimError, match="would promote none"):
        online_multisample.findings(results)
