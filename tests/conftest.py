"""Fixtures shared by every test package: the real recorded data and a replay upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from recorded_data import resolve_data_dir
from replay.store import ReplayStore, build_store
from tests.replay_helpers import replay_upstream


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real recorded data: ``$ADAPTIVE_DATA_DIR``, else the bundled copy (never skipped)."""
    return resolve_data_dir()


@pytest.fixture(scope="session")
def replay_store(data_dir: Path) -> ReplayStore:
    """One store per test session (loading all records takes a few hundred ms)."""
    return build_store(data_dir)


@pytest.fixture
async def replay_base_url(replay_store: ReplayStore) -> AsyncIterator[str]:
    """A running replay upstream on an ephemeral port; yields its ``…/v1`` base URL."""
    async with replay_upstream(replay_store) as url:
        yield url
