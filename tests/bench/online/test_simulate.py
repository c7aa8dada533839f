"""The deployment simulation on a synthetic suite: the real learner, a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from bench.online.metrics import stretch_apgr
from bench.online.simulate import POLICY, OnlineSettings, Trace, simulate
from bench.online.suite import OnlineSuite
from proxy.learn.learner import LearnerSettings
from proxy.learn.records import LabelRecord
from proxy.learn.store_sqlite import SqliteOutcomeStore
from tests.bench.online.synthetic import DIM, synthetic_suite

LEARNER = LearnerSettings(min_labels=200, refit_every=200, embedding_dim=DIM)


def _run(suite: OnlineSuite, settings: OnlineSettings, workdir: Path) -> Trace:
    return asyncio.run(simulate(suite, settings, LEARNER, workdir=workdir, progress=False))


def _window_apgr(suite: OnlineSuite, trace: Trace, scores: np.ndarray, start: int) -> float:
    rows = trace.order[start:]
    return stretch_apgr(scores[start:], suite.reward[rows], suite.cost_usd[rows])


def test_with_both_arms_rewarded_the_learned_head_routes_better_than_the_prior(
    tmp_path: Path,
) -> None:
    suite = synthetic_suite(1200)
    trace = _run(suite, OnlineSettings(feedback="arm_rewards"), tmp_path)
    promoted = [e for e in trace.refits if e.report.status == "promoted"]
    assert promoted, [e.report.reason for e in trace.refits]
    # Before the first refit the prior serves: the learning head's scores are the prior's.
    first = promoted[0].request
    assert np.array_equal(trace.score[: first + 1], trace.static_score[: first + 1])
    assert set(trace.head_version[: first + 1]) == {"prior"}
    # The last request is served by the newest head promoted before it (a refit on the last
    # request's labels can only serve requests that come after it).
    served_last = [e for e in promoted if e.request < len(trace.head_version) - 1][-1]
    assert trace.head_version[-1] == served_last.report.version
    # The last window, long after the promotions, is routed much better than by the prior.
    learned = _window_apgr(suite, trace, trace.score, 1000)
    static = _window_apgr(suite, trace, trace.static_score, 1000)
    assert learned > static + 0.1, (learned, static)
    # Every record and label reached the store, none dropped.
    assert trace.log_counters["written"] == 2 * suite.n
    assert trace.log_counters["dropped"] == {}


def test_the_route_sends_the_configured_share_to_the_expensive_arm(tmp_path: Path) -> None:
    suite = synthetic_suite(1000)
    trace = _run(suite, OnlineSettings(feedback="arm_rewards", expensive_share=0.3), tmp_path)
    assert trace.expensive.mean() == pytest.approx(0.3, abs=0.05)


async def _labels(path: Path) -> list[tuple[str, tuple[LabelRecord, ...]]]:
    from proxy.learn.store import iter_labelled

    store = SqliteOutcomeStore(path, retention_days=100_000.0)
    try:
        return [
            (item.record.decision.arm, item.labels) async for item in iter_labelled(store, POLICY)
        ]
    finally:
        await store.aclose()


def test_a_reward_labels_only_the_arm_that_answered(tmp_path: Path) -> None:
    suite = synthetic_suite(300)
    trace = _run(suite, OnlineSettings(feedback="reward"), tmp_path)
    logged = asyncio.run(_labels(tmp_path / "outcomes.sqlite3"))
    assert len(logged) == suite.n
    for step, (arm, labels) in enumerate(logged):
        (label,) = labels
        assert label.kind == "feedback" and label.arm_rewards == {}
        answered = 1 if trace.expensive[step] else 0
        assert arm == ("expensive" if answered else "cheap")
        assert label.reward == suite.reward[trace.order[step], answered]


def test_without_labels_nothing_is_learned(tmp_path: Path) -> None:
    suite = synthetic_suite(600)
    trace = _run(suite, OnlineSettings(feedback="none"), tmp_path)
    assert trace.refits == [] and int(trace.labels[-1]) == 0
    assert np.array_equal(trace.score, trace.static_score)


def test_exploration_runs_the_other_arm_and_labels_both(tmp_path: Path) -> None:
    suite = synthetic_suite(800)
    trace = _run(suite, OnlineSettings(feedback="none", explore_fraction=0.1), tmp_path)
    explored = int(trace.explored.sum())
    assert 50 <= explored <= 110
    assert int(trace.labels[-1]) == explored
    # The explored run is the arm not chosen: its cost is the other arm's.
    other = np.where(
        trace.expensive, suite.cost_usd[trace.order, 0], suite.cost_usd[trace.order, 1]
    )
    assert np.array_equal(trace.explore_cost_usd, np.where(trace.explored, other, 0.0))
    logged = asyncio.run(_labels(tmp_path / "outcomes.sqlite3"))
    assert len(logged) == explored
    for _arm, labels in logged:
        (label,) = labels
        assert label.kind == "explored" and set(label.arm_rewards) == {"cheap", "expensive"}
