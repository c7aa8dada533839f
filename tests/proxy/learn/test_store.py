"""The outcome store contract, run against both stores (a real SQLite file, a real Redis)."""

from __future__ import annotations

import time

from proxy.learn.records import LabelRecord
from proxy.learn.store import LearnerState, ModelVersion, OutcomeStore
from tests.proxy.learn.builders import collect, make_label, make_record

DAY_S = 86_400.0


async def test_records_and_labels_round_trip(store: OutcomeStore) -> None:
    record = make_record("r1", key="team-a")
    first = make_label("r1", kind="free", arm_rewards={"cheap": 1.0})
    second = make_label("r1", kind="feedback", reward=0.8)
    result = await store.write([record, first, second])
    assert (result.written, result.orphan_labels) == (3, 0)
    found = await store.get("r1")
    assert found.status == "found"
    assert found.record == record
    assert found.labels == (first, second)
    assert (await store.get("never-logged")).status == "missing"


async def test_a_late_label_joins_its_record(store: OutcomeStore) -> None:
    await store.write([make_record("r1"), make_record("r2")])
    assert await collect(store, "router") == []
    late = make_label("r2", kind="explored", arm_rewards={"cheap": 0.0, "expensive": 1.0})
    await store.write([make_record("r3"), late])
    [item] = await collect(store, "router")
    assert item.record.request_id == "r2"
    assert item.labels == (late,)
    assert (await store.get("r2")).labels == (late,)


async def test_a_label_for_an_unknown_request_is_an_orphan(store: OutcomeStore) -> None:
    result = await store.write([make_label("ghost")])
    assert (result.written, result.orphan_labels) == (0, 1)
    assert (await store.get("ghost")).status == "missing"
    assert sum((await store.label_totals("router")).values()) == 0


async def test_a_repeated_request_id_replaces_the_record_and_its_labels(
    store: OutcomeStore,
) -> None:
    await store.write([make_record("r1", arm="cheap"), make_label("r1")])
    await store.write([make_record("r1", arm="expensive")])
    found = await store.get("r1")
    assert found.record is not None and found.record.decision.arm == "expensive"
    assert found.labels == ()
    assert await collect(store, "router") == []


async def test_labelled_pages_follow_the_log_for_one_policy(store: OutcomeStore) -> None:
    entries: list[object] = []
    for i in range(10):
        entries.append(make_record(f"a{i}"))
        entries.append(make_record(f"b{i}", policy="other"))
        if i % 3 != 2:  # a0 a1 a3 a4 a6 a7 a9 are labelled
            entries.append(make_label(f"a{i}"))
        entries.append(make_label(f"b{i}"))
    await store.write(entries)  # type: ignore[arg-type]
    expected = [f"a{i}" for i in range(10) if i % 3 != 2]
    items = await collect(store, "router", page=3)
    assert [i.record.request_id for i in items] == expected
    assert all(i.record.policy == "router" and len(i.labels) == 1 for i in items)
    page = await store.labelled("router", after=items[2].cursor, limit=100)
    assert [i.record.request_id for i in page.items] == expected[3:]
    assert page.cursor is None


async def test_label_totals_count_by_kind_and_survive_trimming(store: OutcomeStore) -> None:
    now = time.time()
    await store.write(
        [
            make_record("r1", unix_time_s=now),
            make_label("r1", kind="free", arm_rewards={"cheap": 1.0}),
            make_label("r1", kind="free", arm_rewards={"cheap": 1.0}),
            make_label("r1", kind="feedback", reward=0.2),
            make_record("r2", policy="other", unix_time_s=now),
            make_label("r2", kind="explored"),
        ]
    )
    assert await store.label_totals("router") == {"free": 2, "explored": 0, "feedback": 1}
    assert await store.label_totals("other") == {"free": 0, "explored": 1, "feedback": 0}
    await store.trim(now + 365 * DAY_S)
    assert await store.label_totals("router") == {"free": 2, "explored": 0, "feedback": 1}


async def test_a_record_past_retention_is_expired_not_missing(store: OutcomeStore) -> None:
    now = time.time()
    await store.write(
        [
            make_record("old", unix_time_s=now - 31 * DAY_S),
            make_label("old"),
            make_record("new", unix_time_s=now),
            make_label("new"),
        ]
    )
    assert (await store.get("old")).status == "expired"
    assert [i.record.request_id for i in await collect(store, "router")] == ["new"]
    await store.trim(now)
    assert (await store.get("old")).status == "expired"
    assert (await store.get("new")).status == "found"
    # Trimming after the newest record's retention removes it too; its id stays known.
    await store.trim(now + 31 * DAY_S)
    assert (await store.get("new")).status == "expired"
    assert (await store.get("never-logged")).status == "missing"
    assert await collect(store, "router") == []


def _model(version: str, policy: str = "router") -> ModelVersion:
    return ModelVersion(
        policy=policy,
        version=version,
        promoted_at_unix_s=time.time(),
        sha256="0" * 64,
        document={"format": "test", "version": version, "weights": [0.1234567, -2.5e-05]},
        scores={"margin": 0.01},
    )


async def test_model_versions_history_and_rollback(store: OutcomeStore) -> None:
    assert await store.current_model("router") is None
    assert await store.rollback_model("router") is None
    await store.put_model(_model("v1"))
    await store.put_model(_model("v2"))
    await store.put_model(_model("w1", policy="other"))
    current = await store.current_model("router")
    assert current is not None and current == _model("v2").model_copy(
        update={"promoted_at_unix_s": current.promoted_at_unix_s}
    )
    assert [m.version for m in await store.models("router")] == ["v1", "v2"]
    back = await store.rollback_model("router")
    assert back is not None and back.version == "v1"
    assert [(m.version, m.rolled_back) for m in await store.models("router")] == [
        ("v1", False),
        ("v2", True),
    ]
    assert await store.rollback_model("router") is None
    assert await store.current_model("router") is None
    other = await store.current_model("other")
    assert other is not None and other.version == "w1"
    await store.put_model(_model("v3"))
    latest = await store.current_model("router")
    assert latest is not None and latest.version == "v3"


async def test_learner_state_round_trips(store: OutcomeStore) -> None:
    assert await store.learner_state("router") == LearnerState()
    state = LearnerState(labels_at_fit=240, last_fit_unix_s=1.5e9, last_result={"status": "x"})
    await store.put_learner_state("router", state)
    assert await store.learner_state("router") == state
    assert await store.learner_state("other") == LearnerState()


def test_label_documents_are_compact() -> None:
    # The embedding is float16: 768 bytes for 384 dimensions (1024 in base64), never text.
    record = make_record("r1")
    assert record.embedding_f16 is not None and len(record.embedding_f16) == 1024
    assert record.messages is None
    assert isinstance(make_label("r1"), LabelRecord)
