"""The request path's side of the outcome log: enqueue and return; a background task writes.

:meth:`OutcomeLog.record` and :meth:`OutcomeLog.label` are plain (non-async) calls that only
append to a bounded in-memory queue, so they cannot block or fail a request; when the queue is
full the entry is dropped and counted. One writer task takes what is queued, up to
``batch_size`` at a time (so batches grow with load, with no added delay when idle), and writes
it to the store. A failing store is counted, warned about once per outage (and once when it
recovers); the failed batch is retried after ``retry_s``, ``max_attempts`` times, then dropped and
counted, while new entries keep queueing up to the bound. Retention trimming runs in the same
task every ``trim_interval_s``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from proxy.learn.records import Entry, LabelRecord, OutcomeRecord
from proxy.learn.store import Lookup, OutcomeStore

log = logging.getLogger("proxy.learn")


class OutcomeLogMetrics(Protocol):
    """What the outcome log reports (the app's ``Metrics`` can implement it for ``/metrics``)."""

    def outcome_written(self, n: int) -> None:
        """``n`` records or labels reached the store."""
        ...

    def outcome_dropped(self, reason: str, n: int) -> None:
        """``n`` entries were lost: ``queue_full``, ``store`` (retries exhausted), ``orphan``
        (a label whose request has no record) or ``shutdown``."""
        ...

    def outcome_store_error(self, op: str) -> None:
        """One failed store call: ``write``, ``read`` or ``trim``."""
        ...


@dataclass
class OutcomeLogCounters:
    """An in-process :class:`OutcomeLogMetrics` (the default; readable by tests and reports)."""

    written: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    store_errors: dict[str, int] = field(default_factory=dict)

    def outcome_written(self, n: int) -> None:
        """Count written entries."""
        self.written += n

    def outcome_dropped(self, reason: str, n: int) -> None:
        """Count dropped entries by reason."""
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def outcome_store_error(self, op: str) -> None:
        """Count failed store calls by operation."""
        self.store_errors[op] = self.store_errors.get(op, 0) + 1


class OutcomeLog:
    """A bounded queue in front of an :class:`~proxy.learn.store.OutcomeStore`."""

    def __init__(
        self,
        store: OutcomeStore,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        retry_s: float = 5.0,
        max_attempts: int = 3,
        trim_interval_s: float = 600.0,
        metrics: OutcomeLogMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or max_attempts < 1:
            raise ValueError("max_queue, batch_size and max_attempts must be at least 1")
        self.store = store
        self.metrics: OutcomeLogMetrics = metrics if metrics is not None else OutcomeLogCounters()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._retry_s = retry_s
        self._max_attempts = max_attempts
        self._trim_interval_s = trim_interval_s
        self._clock = clock
        self._queue: collections.deque[Entry] = collections.deque()
        # Entries not yet in the store (queued or in flight), by request id: a lookup right
        # after the response (feedback) must find a record that is still on its way.
        self._pending: dict[str, list[Entry]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._next_trim = -float("inf")
        self.outage = False

    @property
    def queued(self) -> int:
        """Entries not yet written (queued or in flight)."""
        return sum(len(v) for v in self._pending.values())

    def record(self, record: OutcomeRecord) -> bool:
        """Queue a request's record; ``False`` when it was dropped (queue full or closing)."""
        return self._enqueue(record)

    def label(self, label: LabelRecord) -> bool:
        """Queue a label; ``False`` when it was dropped."""
        return self._enqueue(label)

    def _enqueue(self, entry: Entry) -> bool:
        if self._closing or len(self._queue) >= self._max_queue:
            self.metrics.outcome_dropped("shutdown" if self._closing else "queue_full", 1)
            return False
        self._queue.append(entry)
        self._pending.setdefault(entry.request_id, []).append(entry)
        self._idle.clear()
        self._wake.set()
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._run())
        return True

    async def get(self, request_id: str) -> Lookup:
        """The record and labels of ``request_id``, including entries not yet written.

        Raises :class:`~proxy.learn.store.OutcomeStoreError` when the store cannot be read.
        """
        pending = list(self._pending.get(request_id, ()))
        records = [i for i, e in enumerate(pending) if isinstance(e, OutcomeRecord)]
        if records:
            last = records[-1]
            record = pending[last]
            assert isinstance(record, OutcomeRecord)
            later = tuple(e for e in pending[last + 1 :] if isinstance(e, LabelRecord))
            return Lookup("found", record, later)
        try:
            stored = await self.store.get(request_id)
        except Exception:
            self.metrics.outcome_store_error("read")
            raise
        labels = tuple(e for e in pending if isinstance(e, LabelRecord))
        if stored.status != "found" or not labels:
            return stored
        return Lookup("found", stored.record, stored.labels + labels)

    async def flush(self) -> None:
        """Wait until everything queued so far is written or dropped."""
        await self._idle.wait()

    async def aclose(self, *, timeout_s: float = 5.0) -> None:
        """Stop accepting entries, write what is queued (up to ``timeout_s``), close the store."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        lost = self.queued
        if lost:
            self.metrics.outcome_dropped("shutdown", lost)
        self._queue.clear()
        self._pending.clear()
        await self.store.aclose()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [
                    self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))
                ]
                try:
                    await self._write(batch)
                    await self._maybe_trim()
                except Exception:  # a bug here must not stop the writer for good
                    log.exception("outcome log: writing a batch failed")
                    self.metrics.outcome_dropped("store", len(batch))
                finally:
                    self._settle(batch)
            self._idle.set()

    def _settle(self, batch: list[Entry]) -> None:
        for entry in batch:
            waiting = self._pending.get(entry.request_id)
            if waiting is None:
                continue
            with contextlib.suppress(ValueError):
                waiting.remove(entry)
            if not waiting:
                del self._pending[entry.request_id]

    async def _write(self, batch: list[Entry]) -> None:
        for attempt in range(1, self._max_attempts + 1):
            try:
                result = await self.store.write(batch)
            except Exception as exc:  # the store's trouble must never reach a request
                self.metrics.outcome_store_error("write")
                self._failed(exc)
                if attempt == self._max_attempts or self._closing:
                    break
                await asyncio.sleep(self._retry_s)
                continue
            self._recovered()
            self.metrics.outcome_written(result.written)
            if result.orphan_labels:
                self.metrics.outcome_dropped("orphan", result.orphan_labels)
            return
        self.metrics.outcome_dropped("store", len(batch))

    async def _maybe_trim(self) -> None:
        now = time.monotonic()
        if now < self._next_trim:
            return
        self._next_trim = now + self._trim_interval_s
        try:
            gone = await self.store.trim(self._clock())
        except Exception as exc:
            self.metrics.outcome_store_error("trim")
            self._failed(exc)
            return
        if gone:
            log.info("outcome log: %d records past retention removed", gone)

    def _failed(self, exc: BaseException) -> None:
        if not self.outage:
            self.outage = True
            log.warning("outcome log: store unavailable (%s); requests are unaffected", exc)

    def _recovered(self) -> None:
        if self.outage:
            self.outage = False
            log.warning("outcome log: store reachable again; logging resumed")
