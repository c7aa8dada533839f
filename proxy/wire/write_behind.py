"""A bounded queue of writes and the one background task that sends them, never inline.

Shared state in Redis (budget controllers, arm costs) is written behind the requests that
produce it: a request queues its write and returns; one task per store drains the queue, many
writes per round trip. While Redis is slow the queue is bounded and the oldest writes are
dropped (each store keeps a local copy of what they said).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")

#: Writes queued at the most while Redis is slow; older ones are dropped.
MAX_PENDING = 10_000


class WriteBehind(Generic[_T]):
    """Queued writes of type ``_T`` and the task running ``drain`` that sends them."""

    def __init__(
        self, drain: Callable[[], Coroutine[Any, Any, None]], *, max_pending: int = MAX_PENDING
    ):
        self._drain = drain
        self._max_pending = max_pending
        self.pending: list[_T] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, write: _T) -> None:
        """Queue ``write`` (dropping the oldest past ``max_pending``) and start the task."""
        self.pending.append(write)
        if len(self.pending) > self._max_pending:
            del self.pending[: len(self.pending) - self._max_pending]
        self.start()

    def start(self) -> None:
        """Run ``drain`` in the background unless it is running already."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())

    def take(self) -> list[_T]:
        """Every queued write, leaving the queue empty (``drain`` sends them)."""
        batch, self.pending = self.pending, []
        return batch

    async def flush(self) -> None:
        """Wait until the task has drained the queue (a write queued meanwhile included)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
