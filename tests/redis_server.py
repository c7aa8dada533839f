"""The tests' ``redis-server``: :class:`bench.redis_server.RedisServer`, skipping when absent.

When the binary is missing the test fails with a clear message in CI (env ``CI`` set) and is
skipped elsewhere, instead of raising from inside a fixture.
"""

from __future__ import annotations

import os
import shutil

import pytest

from bench.redis_server import RedisServer as _RedisServer


def find_redis_server() -> str:
    """Return the path of ``redis-server``; fail (CI) or skip (local) when it is missing."""
    path = shutil.which("redis-server")
    if path is not None:
        return path
    message = (
        "redis-server not found on PATH; install it (apt-get install redis-server) "
        "to run the Redis tests"
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class RedisServer(_RedisServer):
    """One ``redis-server`` for a test; see :class:`bench.redis_server.RedisServer`."""

    def find_binary(self) -> str:
        """The binary on PATH, else fail (CI) or skip the test."""
        return find_redis_server()
