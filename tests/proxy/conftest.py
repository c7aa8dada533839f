"""Fixtures shared by the ``tests/proxy`` tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture(scope="session")
def onnx_predictor() -> Iterator[Any]:
    """The shipped ONNX predictor, loaded once (a proxy given it leaves it open)."""
    from predictor_onnx.runtime import OnnxPredictor

    predictor = OnnxPredictor.load()
    try:
        yield predictor
    finally:
        asyncio.run(predictor.aclose())
