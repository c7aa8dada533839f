"""The result document's keys and goals, its file names, the learning-curve plot."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench.online.result import build_result, result_name, write_result
from bench.online.simulate import OnlineSettings, simulate
from proxy.learn.learner import LearnerSettings
from tests.bench.online.synthetic import DIM, synthetic_suite

LEARNER = LearnerSettings(min_labels=200, refit_every=200, embedding_dim=DIM)
TOP_KEYS = {"windows", "final_half_apgr", "static_apgr", "cv_apgr", "explore_cost_share"}


def _doc(settings: OnlineSettings, tmp_path: Path, n: int = 700) -> dict:  # type: ignore[type-arg]
    suite = synthetic_suite(n)
    trace = asyncio.run(simulate(suite, settings, LEARNER, workdir=tmp_path, progress=False))
    return build_result(suite, trace, settings, LEARNER, learner_choice={"candidate": "test"})


def test_windows_and_headline_keys(tmp_path: Path) -> None:
    doc = _doc(OnlineSettings(feedback="arm_rewards"), tmp_path)
    assert TOP_KEYS <= set(doc)
    assert [(w["start"], w["end"]) for w in doc["windows"]] == [
        (0, 200),
        (200, 400),
        (400, 600),
        (600, 700),
    ]
    for w in doc["windows"]:
        assert set(w) == {"start", "end", "apgr", "static", "labels"}
    assert [w["labels"] for w in doc["windows"]] == [200, 400, 600, 700]
    assert doc["cv_apgr"] == 0.7 and doc["explore_cost_share"] == 0.0
    assert set(doc["goals"]) == {"final_half_vs_cv", "final_half_vs_static"}
    goal = doc["goals"]["final_half_vs_static"]
    assert goal["target"] == pytest.approx(doc["static_apgr"] + 0.05, abs=1e-6)
    assert goal["met"] == (doc["final_half_apgr"] >= goal["target"])
    assert doc["learner"]["candidate"] == "test"
    assert doc["learner"]["settings"]["refit_every"] == 200
    assert json.loads(json.dumps(doc)) == doc


def test_exploration_is_reported_as_a_share_of_cost(tmp_path: Path) -> None:
    doc = _doc(OnlineSettings(feedback="none", explore_fraction=0.05), tmp_path, n=1000)
    details = doc["window_details"]
    routed = sum(d["cost_usd"] for d in details)
    explored = sum(d["explore_cost_usd"] for d in details)
    assert doc["explore_cost_share"] == pytest.approx(explored / (routed + explored), rel=1e-5)
    assert 0 < doc["explore_cost_share"] <= 0.06
    goal = doc["goals"]["final_half_vs_static_explore"]
    assert doc["explored_labels"] < 500 and goal["applies"] is False and goal["met"] is None
    # Exploration spend lowers the APGR against the same routing without it.
    assert doc["final_half_apgr"] < doc["final_half_apgr_routing"]


def test_file_names_and_plot(tmp_path: Path) -> None:
    assert result_name("s", OnlineSettings()) == "online-s"
    assert result_name("s", OnlineSettings(feedback="reward")) == "online-s-reward"
    assert (
        result_name("s", OnlineSettings(feedback="none", explore_fraction=0.05))
        == "online-s-none-explore0.05"
    )
    doc = _doc(OnlineSettings(), tmp_path / "run")
    path, png = write_result(tmp_path / "out", "online-s", doc)
    assert json.loads(path.read_text()) == doc
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
