"""The outcome log on the request path: never blocks or fails, batches, counts, warns once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from proxy.learn.log import OutcomeLog, OutcomeLogCounters
from tests.proxy.learn.builders import make_label, make_record, redis_store, sqlite_store
from tests.redis_server import RedisServer

WARNING = "outcome log: store unavailable"
RECOVERED = "outcome log: store reachable again"


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_entries_reach_the_store_in_batches(tmp_path: Path) -> None:
    counters = OutcomeLogCounters()
    log = OutcomeLog(sqlite_store(tmp_path / "o.sqlite3"), batch_size=50, metrics=counters)
    try:
        for i in range(120):
            assert log.record(make_record(f"r{i}"))
            assert log.label(make_label(f"r{i}"))
        await log.flush()
        assert counters.written == 240
        assert log.queued == 0
        found = await log.store.get("r119")
        assert found.status == "found" and len(found.labels) == 1
    finally:
        await log.aclose()


async def test_a_lookup_finds_what_is_still_queued(tmp_path: Path) -> None:
    log = OutcomeLog(sqlite_store(tmp_path / "o.sqlite3"))
    try:
        record = make_record("r1")
        log.record(record)
        # Feedback can arrive before the writer ran: the queued record answers.
        found = await log.get("r1")
        assert found.status == "found" and found.record == record
        await log.flush()
        label = make_label("r1", kind="feedback", reward=0.5)
        log.label(label)
        found = await log.get("r1")
        assert found.status == "found" and found.labels == (label,)
        assert (await log.get("nope")).status == "missing"
    finally:
        await log.aclose()


async def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    counters = OutcomeLogCounters()
    log = OutcomeLog(sqlite_store(tmp_path / "o.sqlite3"), max_queue=3, metrics=counters)
    try:
        # No await in between: the writer cannot run, so the queue's bound decides.
        accepted = [log.record(make_record(f"r{i}")) for i in range(5)]
        assert accepted == [True, True, True, False, False]
        assert counters.dropped == {"queue_full": 2}
        await log.flush()
        assert counters.written == 3
    finally:
        await log.aclose()


async def test_labels_of_unknown_requests_are_counted(tmp_path: Path) -> None:
    counters = OutcomeLogCounters()
    log = OutcomeLog(sqlite_store(tmp_path / "o.sqlite3"), metrics=counters)
    try:
        log.label(make_label("ghost"))
        await log.flush()
        assert counters.dropped == {"orphan": 1}
    finally:
        await log.aclose()


async def test_redis_stopped_midway_never_reaches_the_request(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.learn")
    counters = OutcomeLogCounters()
    log = OutcomeLog(redis_store(redis_server.url), retry_s=0.01, max_attempts=2, metrics=counters)
    try:
        assert log.record(make_record("before"))
        await log.flush()
        assert counters.written == 1
        redis_server.kill()
        for round_ in range(3):
            # record() is synchronous: it returns at once, whatever the store is doing.
            assert log.record(make_record(f"down{round_}"))
            assert log.label(make_label(f"down{round_}"))
            await log.flush()
        assert counters.store_errors["write"] >= 3
        assert counters.dropped == {"store": 6}
        assert len(_messages(caplog, WARNING)) == 1
        assert _messages(caplog, RECOVERED) == []
        with pytest.raises(Exception, match="outcome store"):
            await log.get("before")
        redis_server.restart()
        assert log.record(make_record("after"))
        await log.flush()
        assert counters.written == 2
        assert len(_messages(caplog, RECOVERED)) == 1
        assert (await log.get("after")).status == "found"
        assert counters.store_errors["read"] == 1
    finally:
        await log.aclose()


async def test_close_writes_what_is_queued_then_refuses(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    counters = OutcomeLogCounters()
    log = OutcomeLog(sqlite_store(path), metrics=counters)
    for i in range(10):
        log.record(make_record(f"r{i}"))
    await log.aclose()
    assert counters.written == 10
    assert not log.record(make_record("late"))
    assert counters.dropped == {"shutdown": 1}
    reopened = sqlite_store(path)
    try:
        assert (await reopened.get("r9")).status == "found"
    finally:
        await reopened.aclose()
