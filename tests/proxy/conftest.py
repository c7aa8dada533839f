"""Fixtures shared by the ``tests/proxy`` tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started real ``redis-server`` on a free port, always stopped after the test."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
