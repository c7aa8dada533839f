"""Where the dashboard's slots are kept: in process, or in Redis per replica.

Redis layout (``cache.redis_url``): one hash per replica, ``adaptive:stats:slots:<replica>``,
field = slot start (Unix seconds), value = the slot's JSON; and one sorted set,
``adaptive:stats:replicas``, scoring each replica by when it last wrote. A page served by any
replica reads every replica seen within the window. Slots older than ``retention_s`` are
deleted by the replica that wrote them (and whole hashes expire after ``retention_s`` when a
replica goes away).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from proxy.observe.stats import Slot, StatsStore

REPLICAS_KEY = "adaptive:stats:replicas"
SLOTS_PREFIX = "adaptive:stats:slots:"


def replica_id() -> str:
    """A name for this process among the replicas: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class MemoryStatsStore(StatsStore):
    """Slots of this process only (no ``cache.redis_url``)."""

    backend = "memory"

    def __init__(
        self, retention_s: int, *, replica: str = "local", clock: Callable[[], float] = time.time
    ) -> None:
        self._retention_s = retention_s
        self._replica = replica
        self._clock = clock
        self._slots: dict[int, Slot] = {}

    async def write(self, slots: dict[int, Slot]) -> None:
        """Keep the slots (copies: the recorder goes on adding to its current one)."""
        for start, slot in slots.items():
            self._slots[start] = orjson.loads(orjson.dumps(slot))
        oldest = int(self._clock()) - self._retention_s
        for start in [s for s in self._slots if s < oldest]:
            del self._slots[start]

    async def read(self, since_s: int) -> list[tuple[str, int, Slot]]:
        """This process's slots from ``since_s`` on."""
        return [(self._replica, s, slot) for s, slot in self._slots.items() if s >= since_s]


class RedisStatsStore(StatsStore):
    """Each replica's slots in Redis; reads merge every replica's."""

    backend = "redis"

    def __init__(
        self,
        client: Any,
        retention_s: int,
        *,
        replica: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._retention_s = retention_s
        self.replica = replica or replica_id()
        self._clock = clock
        self._key = SLOTS_PREFIX + self.replica
        self._last_trim_s = 0.0

    async def write(self, slots: dict[int, Slot]) -> None:
        """Write this replica's slots and mark it alive; now and then drop expired slots."""
        now = self._clock()
        pipe = self._client.pipeline(transaction=False)
        if slots:
            pipe.hset(self._key, mapping={str(s): orjson.dumps(v) for s, v in slots.items()})
        pipe.expire(self._key, self._retention_s)
        pipe.zadd(REPLICAS_KEY, {self.replica: now})
        pipe.zremrangebyscore(REPLICAS_KEY, "-inf", now - self._retention_s)
        await pipe.execute()
        if now - self._last_trim_s >= 60:
            self._last_trim_s = now
            oldest = int(now) - self._retention_s
            fields = await self._client.hkeys(self._key)
            stale = [f for f in fields if int(f) < oldest]
            if stale:
                await self._client.hdel(self._key, *stale)

    async def read(self, since_s: int) -> list[tuple[str, int, Slot]]:
        """Every replica's slots from ``since_s`` on (a replica silent since then is left out)."""
        replicas = await self._client.zrangebyscore(REPLICAS_KEY, since_s, "+inf")
        raw_slots: list[tuple[str, dict[Any, Any]]] = []
        for raw in replicas:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            raw_slots.append((name, await self._client.hgetall(SLOTS_PREFIX + name)))

        def decode() -> list[tuple[str, int, Slot]]:
            return [
                (name, int(field), orjson.loads(value))
                for name, slots in raw_slots
                for field, value in slots.items()
                if int(field) >= since_s
            ]

        # Hours of slots from several replicas: decoded off the event loop.
        return await asyncio.to_thread(decode)

    async def aclose(self) -> None:
        """Close the Redis connection pool."""
        await self._client.aclose()
