"""The learner on a real SQLite store: promotes informative labels, rejects noise, survives being
killed mid-export, rolls back."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from predictor_onnx.manifest import sha256_file
from proxy.learn.export import HeadExporter
from proxy.learn.learner import Learner, LearnerSettings
from proxy.learn.records import LabelRecord, OutcomeRecord
from proxy.learn.store_sqlite import SqliteOutcomeStore
from proxy.learn.targets import best_of_k_spec, route_spec
from tests.proxy.learn.builders import sqlite_store
from tests.proxy.learn.traffic import T0, traffic

SPEC = route_spec("router", cheap_output="p_weak", expensive_output="p_strong")
PRIOR = "shipped-prior-1"


class Clock:
    """The learner's wall clock, after the traffic's label times."""

    def __init__(self) -> None:
        self.now = T0 + 100_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteOutcomeStore]:
    s = sqlite_store(tmp_path / "outcomes.sqlite3", retention_days=100_000)
    try:
        yield s
    finally:
        await s.aclose()


def _learner(
    store: SqliteOutcomeStore, models: Path, *, replace: Callable[[Path, Path], None] = os.replace
) -> Learner:
    exporter = HeadExporter(models, replace=replace)
    return Learner(store, exporter, prior_version=PRIOR, clock=Clock())


async def test_informative_labels_promote_a_head_that_learned_the_traffic(
    store: SqliteOutcomeStore, tmp_path: Path
) -> None:
    await store.write(traffic(500, kind="informative").entries)
    learner = _learner(store, tmp_path / "models")
    report = await learner.refit(SPEC)
    assert report.status == "promoted", report.reason
    assert (report.train_rows, report.holdout_rows) == (400, 100)
    pre = report.prequential
    assert pre["candidate"]["log_loss"] < pre["current"]["log_loss"] == pre["prior"]["log_loss"]
    assert pre["candidate"]["auc"] > pre["current"]["auc"]
    model = await store.current_model("router")
    assert model is not None and model.version == report.version
    # The folder's manifest names it, and the file's hash is the store's.
    manifest = learner.exporter.manifest("router")
    assert manifest["current"] == report.version
    path = learner.exporter.head_path("router", model.version)
    assert manifest["files"][path.name] == sha256_file(path) == model.sha256
    head = learner.exporter.load_current("router")
    assert head is not None and head.version == model.version

    # On new prompts of the same kinds, the head moves the cheap arm's success the way the
    # traffic does: up where the cheap arm does better than the prior thinks, down elsewhere.
    fresh = traffic(60, kind="informative", start=50_000)
    moved_up: list[float] = []
    moved_down: list[float] = []
    for entry in fresh.entries:
        if not isinstance(entry, OutcomeRecord):
            continue
        embedding = entry.embedding()
        assert embedding is not None
        cluster = int(np.argmax(fresh.centres @ embedding))
        out = head.apply(entry.predictions, embedding)
        assert out["gain"] == pytest.approx(out["p_strong"] - out["p_weak"])
        delta = out["p_weak"] - entry.predictions["p_weak"]
        (moved_up if fresh.cheap_shift[cluster] > 0 else moved_down).append(delta)
    assert min(moved_up) > 0 > max(moved_down)


async def test_noise_labels_are_rejected(store: SqliteOutcomeStore, tmp_path: Path) -> None:
    await store.write(traffic(500, kind="noise").entries)
    learner = _learner(store, tmp_path / "models")
    report = await learner.refit(SPEC)
    assert report.status == "rejected"
    assert "margin" in report.reason or "z" in report.reason
    assert await store.current_model("router") is None
    assert learner.exporter.manifest("router")["current"] is None
    assert not (tmp_path / "models").exists()
    assert learner.model_version(None) == PRIOR
    # Rejected is remembered: no refit until refit_every more labels arrive.
    assert (await store.learner_state("router")).labels_at_fit == 500
    assert (await learner.refit(SPEC)).status == "not_due"


async def test_refits_wait_for_min_labels_and_refit_every(
    store: SqliteOutcomeStore, tmp_path: Path
) -> None:
    settings = LearnerSettings(min_labels=300, refit_every=150)
    learner = Learner(
        store, HeadExporter(tmp_path / "m"), prior_version=PRIOR, settings=settings, clock=Clock()
    )
    await store.write(traffic(250, kind="informative").entries)
    assert (await learner.refit(SPEC)).status == "too_few"
    await store.write(traffic(100, kind="informative", start=250).entries)
    first = await learner.refit(SPEC)
    assert first.status == "promoted"
    await store.write(traffic(100, kind="informative", start=350).entries)
    assert (await learner.refit(SPEC)).status == "not_due"
    await store.write(traffic(60, kind="informative", start=450).entries)
    second = await learner.refit(SPEC)
    assert second.status in ("promoted", "rejected")
    # The second candidate had to beat the promoted head, not the prior.
    pre = second.prequential
    assert pre["current"]["log_loss"] < pre["prior"]["log_loss"]


async def test_a_learner_killed_mid_export_leaves_the_serving_head(
    store: SqliteOutcomeStore, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    await store.write(traffic(500, kind="informative", seed=1).entries)
    first = await _learner(store, models).refit(SPEC)
    assert first.status == "promoted"
    folder = models / "router"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    state_before = await store.learner_state("router")

    # New traffic of other kinds: the next candidate would be promoted, but the process dies
    # once the new head's temporary file is written, before the rename.
    await store.write(traffic(300, kind="informative", seed=2, start=500).entries)
    seen: list[Path] = []

    def killed(src: Path, dst: Path) -> None:
        assert src.read_bytes()  # the temporary file was written
        seen.append(dst)
        raise OSError("learner killed")

    with pytest.raises(OSError, match="learner killed"):
        await _learner(store, models, replace=killed).refit(SPEC)
    assert seen and seen[0].parent == folder and seen[0].name != "manifest.json"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no stray .tmp either
    current = await store.current_model("router")
    assert current is not None and current.version == first.version
    assert await store.learner_state("router") == state_before

    # Nothing was lost: the next learner refits on the same labels and promotes.
    retry = await _learner(store, models).refit(SPEC)
    assert retry.status == "promoted" and retry.version != first.version
    assert retry.train_rows + retry.holdout_rows == 800


async def test_rollback_returns_to_the_previous_version_then_the_prior(
    store: SqliteOutcomeStore, tmp_path: Path
) -> None:
    learner = _learner(store, tmp_path / "models")
    await store.write(traffic(500, kind="informative", seed=1).entries)
    first = await learner.refit(SPEC)
    await store.write(traffic(500, kind="informative", seed=2, start=500).entries)
    second = await learner.refit(SPEC)
    assert (first.status, second.status) == ("promoted", "promoted")
    back = await learner.rollback("router")
    assert back is not None and back.version == first.version
    current = await store.current_model("router")
    assert current is not None and current.version == first.version
    assert learner.exporter.manifest("router")["current"] == first.version
    loaded = learner.exporter.load_current("router")
    assert loaded is not None and loaded.version == first.version
    assert await learner.rollback("router") is None
    assert await store.current_model("router") is None
    assert learner.exporter.manifest("router")["current"] is None
    assert learner.exporter.load_current("router") is None
    # Both versions stay in the history (and on disk) for the record.
    assert [(m.version, m.rolled_back) for m in await store.models("router")] == [
        (first.version, True),
        (second.version, True),
    ]
    assert len([p for p in os.listdir(tmp_path / "models" / "router") if p != "manifest.json"]) == 2


async def test_best_of_k_learns_the_success_of_one_sample(
    store: SqliteOutcomeStore, tmp_path: Path
) -> None:
    await store.write(traffic(300, kind="informative", label="sample_success").entries)
    learner = _learner(store, tmp_path / "models")
    report = await learner.refit(best_of_k_spec("router", output="p_weak"))
    assert report.status == "promoted", report.reason
    model = await store.current_model("router")
    assert model is not None
    assert model.document["target_order"] == ["sample"]
    assert model.document["targets"]["sample"]["prior_output"] == "p_weak"
    assert json.loads(json.dumps(model.document)) == model.document


async def test_a_route_heads_two_arms_share_one_l2(
    store: SqliteOutcomeStore, tmp_path: Path
) -> None:
    # The cheap arm's outcomes depend on the prompt's kind; the expensive arm's are drawn from
    # the prior itself. Chosen apart, the cheap arm would move far and the expensive one stay
    # put; the gain ranks prompts by both, so both are regularised alike.
    informative = traffic(500, kind="informative", seed=3).entries
    noise = {
        e.request_id: e.arm_rewards["expensive"]
        for e in traffic(500, kind="noise", seed=4).entries
        if isinstance(e, LabelRecord)
    }
    entries = [
        e
        if not isinstance(e, LabelRecord)
        else e.model_copy(
            update={"arm_rewards": {**e.arm_rewards, "expensive": noise[e.request_id]}}
        )
        for e in informative
    ]
    await store.write(entries)
    report = await _learner(store, tmp_path / "models").refit(SPEC)
    assert report.status == "promoted", report.reason
    model = await store.current_model("router")
    assert model is not None
    l2 = model.document["meta"]["l2"]
    assert l2["cheap"] == l2["expensive"], l2
