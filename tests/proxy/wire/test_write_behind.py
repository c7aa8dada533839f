"""The write-behind queue: bounded, drained by one task, flushed on demand."""

from __future__ import annotations

import asyncio

from proxy.wire.write_behind import WriteBehind


async def test_one_task_sends_every_write_queued_before_the_flush() -> None:
    sent: list[list[int]] = []

    async def drain() -> None:
        while writes.pending:
            await asyncio.sleep(0)  # a round trip: writes queued meanwhile go in the next batch
            sent.append(writes.take())

    writes: WriteBehind[int] = WriteBehind(drain)
    for value in range(3):
        writes.add(value)
    await writes.flush()
    assert [value for batch in sent for value in batch] == [0, 1, 2]
    assert writes.pending == []


async def test_past_the_bound_the_oldest_writes_are_dropped() -> None:
    sent: list[int] = []

    async def drain() -> None:
        sent.extend(writes.take())

    writes: WriteBehind[int] = WriteBehind(drain, max_pending=2)
    for value in range(5):
        writes.add(value)  # the task runs only once this coroutine yields
    await writes.flush()
    assert sent == [3, 4]
