"""The learning report of a policy, as ``GET /v1/adaptive/learning`` shows it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from proxy.learn.export import HeadExporter
from proxy.learn.learner import Learner
from proxy.learn.report import policy_learning
from proxy.learn.store import OutcomeStore
from proxy.learn.targets import route_spec
from tests.proxy.learn.builders import sqlite_store
from tests.proxy.learn.traffic import T0, traffic

PRIOR = "shipped-prior-1"


async def test_the_report_follows_labels_promotion_and_rollback(tmp_path: Path) -> None:
    store: OutcomeStore = sqlite_store(tmp_path / "o.sqlite3", retention_days=100_000)
    try:
        empty = await policy_learning(store, "router", prior_version=PRIOR)
        assert empty == {
            "labels": {"free": 0, "explored": 0, "feedback": 0},
            "model_version": PRIOR,
            "promoted_at": None,
            "prequential": {},
            "explore_spend_usd": 0.0,
        }
        await store.write(traffic(500, kind="informative").entries)
        learner = Learner(
            store, HeadExporter(tmp_path / "m"), prior_version=PRIOR, clock=lambda: T0 + 1e5
        )
        refit = await learner.refit(
            route_spec("router", cheap_output="p_weak", expensive_output="p_strong")
        )
        report = await policy_learning(
            store, "router", prior_version=PRIOR, explore_spend_usd=0.0123
        )
        assert report["labels"] == {"free": 0, "explored": 0, "feedback": 500}
        assert report["model_version"] == refit.version
        assert dt.datetime.fromisoformat(report["promoted_at"]).timestamp() == int(T0 + 1e5)
        last = report["prequential"]["last_refit"]
        assert last["status"] == "promoted"
        assert last["candidate"]["log_loss"] < last["prior"]["log_loss"]
        assert report["prequential"]["promoted"]["margin"] == last["margin"]
        assert report["explore_spend_usd"] == 0.0123
        await learner.rollback("router")
        after = await policy_learning(store, "router", prior_version=PRIOR)
        assert (after["model_version"], after["promoted_at"]) == (PRIOR, None)
    finally:
        await store.aclose()
