"""The budget controllers' shared state in Redis: pipelined background writes, bounded reads.

Every request adds one observation. Writing it inline would put a Redis round trip on every
request's response path, so observations are queued and written by one background task, many
per round trip (EVALSHA of the observe script, pipelined). Reads (the shared window, counters
and integral) happen when λ is re-solved. A failed call is retried once on a fresh connection
before it counts as an outage; one warning per outage, the controller's local mirror serves
meanwhile, and Redis is tried again after ``retry_s``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from proxy.wire.redis_client import call_with_fresh_retry
from proxy.wire.write_behind import WriteBehind

# The controller's logger: operators filter on it.
log = logging.getLogger("proxy.policies.budget.controller")

OBSERVE_LUA = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('HINCRBYFLOAT', KEYS[2], 'n', 1)
redis.call('HINCRBYFLOAT', KEYS[2], 'e', ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[2], 's', ARGV[4])
redis.call('HINCRBYFLOAT', KEYS[2], 'c', ARGV[5])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
local i = tonumber(redis.call('GET', KEYS[3]) or '0')
i = (1 - tonumber(ARGV[9])) * i + tonumber(ARGV[8]) * tonumber(ARGV[7])
local m = tonumber(ARGV[10])
if i > m then i = m elseif i < -m then i = -m end
redis.call('SET', KEYS[3], tostring(i))
return tostring(i)
"""
_OBSERVE_SHA = hashlib.sha1(OBSERVE_LUA.encode()).hexdigest()

Observation = tuple[Sequence[str], Sequence[Any]]


class RedisBudgetStore:
    """One controller's Redis keys, written in the background and read on demand."""

    def __init__(self, redis: Any, *, timeout_s: float, retry_s: float) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._down_until = -math.inf
        self.outage = False
        self._writes: WriteBehind[Observation] = WriteBehind(self._write_pending)

    def usable(self) -> bool:
        """False while Redis is skipped after a failure."""
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_s
        if not self.outage:
            self.outage = True
            log.warning("budget controller: Redis unavailable (%s); using local state", exc)

    def _ok(self) -> None:
        if self.outage:
            self.outage = False
            log.info("budget controller: Redis reachable again; sharing state")

    async def _call(self, operation: Any) -> Any:
        # While Redis is up, a failure gets one more try on a fresh connection before it counts
        # as an outage (a stale pooled connection after a Redis restart is not one).
        return await call_with_fresh_retry(
            self._redis, operation, timeout_s=self._timeout_s, retry=not self.outage
        )

    def add(self, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Queue one observation; it is written by the background writer, never inline."""
        if not self.usable():
            return
        self._writes.add((keys, args))

    async def flush(self) -> None:
        """Wait until every queued observation is written (or dropped by an outage)."""
        await self._writes.flush()

    async def _write_pending(self) -> None:
        while self._writes.pending:
            batch = self._writes.take()
            if not self.usable():
                continue
            try:
                await self._call(functools.partial(self._write, batch))
            except Exception as exc:  # Redis trouble must never fail a request
                self._failed(exc)
            else:
                self._ok()

    async def _write(self, batch: list[Observation]) -> None:
        from redis.exceptions import NoScriptError

        for attempt in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args in batch:
                    pipe.evalsha(_OBSERVE_SHA, len(keys), *keys, *args)
                try:
                    await pipe.execute()
                    return
                except NoScriptError:
                    if attempt:
                        raise
            # A fresh (or restarted) Redis does not know the script yet.
            await self._redis.script_load(OBSERVE_LUA)

    async def read(
        self, keys: tuple[str, str, str], window_size: int, buckets: range
    ) -> tuple[list[bytes], Any, list[dict[bytes, bytes]]] | None:
        """(window newest first, integral, bucket hashes), or None when Redis is unavailable."""
        if not self.usable():
            return None
        # Writes still queued are not waited for: under load there always are some, and a
        # window a few requests behind solves to the same λ.
        redis = self._redis

        async def read_all() -> Any:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.lrange(keys[0], 0, window_size - 1)
                pipe.get(keys[2])
                for b in buckets:
                    pipe.hgetall(f"{keys[1]}{b}")
                return await pipe.execute()

        try:
            raw_window, raw_integral, *raw_buckets = await self._call(read_all)
        except Exception as exc:  # fall back to the local mirror
            self._failed(exc)
            return None
        self._ok()
        return raw_window, raw_integral, raw_buckets
