"""Fixtures of the learning tests: the outcome store, once per implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.learn.store import OutcomeStore
from tests.proxy.learn.builders import closing, redis_store, sqlite_store
from tests.redis_server import RedisServer


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OutcomeStore]:
    """A fresh outcome store: an SQLite file in ``tmp_path``, or a real redis-server."""
    if request.param == "sqlite":
        async for s in closing(sqlite_store(tmp_path / "outcomes.sqlite3")):
            yield s
        return
    server = RedisServer()
    server.start()
    try:
        async for s in closing(redis_store(server.url)):
            yield s
    finally:
        server.close()
