"""The openai SDK's client on the session's replay upstream, for the replay server's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from openai import AsyncOpenAI


@pytest.fixture
async def client(replay_base_url: str) -> AsyncIterator[AsyncOpenAI]:
    """An ``AsyncOpenAI`` on the replay upstream, without retries."""
    async with AsyncOpenAI(base_url=replay_base_url, api_key="x", max_retries=0) as c:
        yield c
