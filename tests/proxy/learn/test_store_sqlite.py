"""The embedded store: its file (default place, WAL, shared by processes), bounds, tombstones."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from proxy.learn.store import OutcomeStoreError, default_sqlite_path
from tests.proxy.learn.builders import collect, make_label, make_record, sqlite_store

DAY_S = 86_400.0


def test_default_path_is_under_the_user_data_dir() -> None:
    assert default_sqlite_path({"XDG_DATA_HOME": "/srv/data", "HOME": "/home/u"}) == Path(
        "/srv/data/adaptive-proxy/outcomes.sqlite3"
    )
    assert default_sqlite_path({"HOME": "/home/u"}) == Path(
        "/home/u/.local/share/adaptive-proxy/outcomes.sqlite3"
    )
    # The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
    assert default_sqlite_path({"XDG_DATA_HOME": "rel", "HOME": "/home/u"}) == Path(
        "/home/u/.local/share/adaptive-proxy/outcomes.sqlite3"
    )


async def test_one_wal_file_shared_by_a_server_and_a_learner(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "outcomes.sqlite3"
    server, learner = sqlite_store(path), sqlite_store(path)
    try:
        await server.write([make_record("r1"), make_label("r1")])
        [item] = await collect(learner, "router")
        assert item.record.request_id == "r1"
        await learner.write([make_label("r1", kind="explored")])
        assert len((await server.get("r1")).labels) == 2
    finally:
        await server.aclose()
        await learner.aclose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_max_records_keeps_the_newest(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / "o.sqlite3", max_records=5)
    try:
        await store.write([make_record(f"r{i}") for i in range(12)])
        assert await store.trim(time.time()) == 7
        assert (await store.get("r6")).status == "expired"
        assert (await store.get("r7")).status == "found"
        await store.write([make_label(f"r{i}") for i in range(12)])
        assert [i.record.request_id for i in await collect(store, "router")] == [
            f"r{i}" for i in range(7, 12)
        ]
    finally:
        await store.aclose()


async def test_tombstones_last_tombstone_days(tmp_path: Path) -> None:
    now = time.time()
    store = sqlite_store(tmp_path / "o.sqlite3", retention_days=10, tombstone_days=5)
    try:
        await store.write([make_record("r1", unix_time_s=now)])
        await store.trim(now + 11 * DAY_S)
        assert (await store.get("r1")).status == "expired"
        await store.trim(now + 14 * DAY_S)
        assert (await store.get("r1")).status == "expired"
        await store.trim(now + 16 * DAY_S)
        assert (await store.get("r1")).status == "missing"
    finally:
        await store.aclose()


async def test_an_unusable_file_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's folder should be")
    store = sqlite_store(blocker / "outcomes.sqlite3")
    try:
        with pytest.raises(OutcomeStoreError) as caught:
            await store.write([make_record("r1")])
        assert caught.value.status == 503
        assert str(blocker) in caught.value.message
    finally:
        await store.aclose()
