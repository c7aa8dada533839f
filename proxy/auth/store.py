"""Shared per-client state: request and spend counters, and keys created at run time.

:class:`RedisAuthStore` keeps them in Redis, so every replica and worker enforces one limit
together; :class:`MemoryAuthStore` keeps them in the process (one replica). Every Redis failure
is raised as :class:`AuthStoreError`; the guard decides whether that fails open or closed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from proxy.auth.spec import ClientLimits

_PREFIX = "adaptive:auth"
_MINUTE_S = 60
_DAY_TTL_S = 2 * 86_400
_MONTH_TTL_S = 32 * 86_400
# One round trip per request: count it in this minute's window, read today's and this month's
# spend.
_ADMIT_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or '0'}
"""


class AuthStoreError(Exception):
    """The shared store could not answer (Redis down, slow, or refusing)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """A client's counters at the moment of a request."""

    requests_this_minute: int
    spend_today_usd: float
    spend_this_month_usd: float
    seconds_to_next_minute: float


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A key created at run time: its name, hash, limits and creation time."""

    name: str
    key_sha256: str
    limits: ClientLimits
    created_s: float

    def to_json(self) -> bytes:
        """The stored form (the hash, never the key)."""
        return orjson.dumps(
            {
                "name": self.name,
                "key_sha256": self.key_sha256,
                "limits": self.limits.model_dump(mode="json"),
                "created_s": self.created_s,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> StoredKey:
        """Rebuild a stored key."""
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            name=data["name"],
            key_sha256=data["key_sha256"],
            limits=ClientLimits.model_validate(data["limits"]),
            created_s=float(data["created_s"]),
        )


def _windows(now_s: float) -> tuple[str, str, str, float]:
    """(minute, day, month) window ids in UTC, and seconds left in the minute."""
    minute = int(now_s // _MINUTE_S)
    day = time.strftime("%Y%m%d", time.gmtime(now_s))
    return str(minute), day, day[:6], (minute + 1) * _MINUTE_S - now_s


class AuthStore(Protocol):
    """Counters and run-time keys (Redis or in-process)."""

    backend: str

    async def admit(self, name: str, now_s: float) -> Usage:
        """Count one request of ``name`` and return its counters."""
        ...

    async def add_spend(self, cost_usd_by_name: Mapping[str, float], now_s: float) -> None:
        """Add finished requests' costs to today's and this month's spend of each name."""
        ...

    async def spend(self, name: str, now_s: float) -> tuple[float, float]:
        """(today, this month) spend of ``name`` in USD."""
        ...

    async def create_key(self, key: StoredKey) -> bool:
        """Store a new key; ``False`` when its name is taken."""
        ...

    async def get_key(self, key_sha256: str) -> StoredKey | None:
        """The run-time key with this hash, if any."""
        ...

    async def list_keys(self) -> list[StoredKey]:
        """Every run-time key, by name."""
        ...

    async def revoke_key(self, name: str) -> bool:
        """Delete the run-time key ``name``; ``False`` when there is none."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryAuthStore:
    """In-process counters and keys: right for a single process, not shared."""

    backend = "memory"

    def __init__(self) -> None:
        self._spend_usd: dict[tuple[str, str], float] = {}
        self._minute = ""
        self._requests: dict[str, int] = {}
        self._keys: dict[str, StoredKey] = {}

    async def admit(self, name: str, now_s: float) -> Usage:
        """Count one request of ``name`` and return its counters."""
        minute, _, _, left_s = _windows(now_s)
        if minute != self._minute:
            self._minute, self._requests = minute, {}
        count = self._requests[name] = self._requests.get(name, 0) + 1
        today, this_month = await self.spend(name, now_s)
        return Usage(count, today, this_month, left_s)

    async def add_spend(self, cost_usd_by_name: Mapping[str, float], now_s: float) -> None:
        """Add finished requests' costs to today's and this month's spend of each name."""
        _, day, month, _ = _windows(now_s)
        for name, cost_usd in cost_usd_by_name.items():
            for window in ("d:" + day, "m:" + month):
                key = (name, window)
                self._spend_usd[key] = self._spend_usd.get(key, 0.0) + cost_usd

    async def spend(self, name: str, now_s: float) -> tuple[float, float]:
        """(today, this month) spend of ``name`` in USD."""
        _, day, month, _ = _windows(now_s)
        return (
            self._spend_usd.get((name, "d:" + day), 0.0),
            self._spend_usd.get((name, "m:" + month), 0.0),
        )

    async def create_key(self, key: StoredKey) -> bool:
        """Store a new key; ``False`` when its name is taken."""
        if any(k.name == key.name for k in self._keys.values()):
            return False
        self._keys[key.key_sha256] = key
        return True

    async def get_key(self, key_sha256: str) -> StoredKey | None:
        """The run-time key with this hash, if any."""
        return self._keys.get(key_sha256)

    async def list_keys(self) -> list[StoredKey]:
        """Every run-time key, by name."""
        return sorted(self._keys.values(), key=lambda k: k.name)

    async def revoke_key(self, name: str) -> bool:
        """Delete the run-time key ``name``; ``False`` when there is none."""
        for sha, key in list(self._keys.items()):
            if key.name == name:
                del self._keys[sha]
                return True
        return False

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisAuthStore:
    """Counters and keys in Redis: every replica and worker shares one limit per client."""

    backend = "redis"

    def __init__(self, client: Any) -> None:
        self._redis = client
        self._admit = client.register_script(_ADMIT_LUA)

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except Exception as exc:  # redis raises its own family plus OSError and timeouts
            raise AuthStoreError(f"{type(exc).__name__}: {exc}") from None

    async def admit(self, name: str, now_s: float) -> Usage:
        """Count one request of ``name`` and return its counters (one round trip)."""
        minute, day, month, left_s = _windows(now_s)
        base = f"{_PREFIX}:{{{name}}}"
        count, day_usd, month_usd = await self._call(
            self._admit(
                keys=[f"{base}:rpm:{minute}", f"{base}:usd:d:{day}", f"{base}:usd:m:{month}"],
                args=[2 * _MINUTE_S],
            )
        )
        return Usage(int(count), float(day_usd), float(month_usd), left_s)

    async def add_spend(self, cost_usd_by_name: Mapping[str, float], now_s: float) -> None:
        """Add finished requests' costs to each name's spend (one pipelined round trip)."""
        _, day, month, _ = _windows(now_s)
        pipe = self._redis.pipeline(transaction=False)
        for name, cost_usd in cost_usd_by_name.items():
            base = f"{_PREFIX}:{{{name}}}"
            pipe.incrbyfloat(f"{base}:usd:d:{day}", cost_usd)
            pipe.expire(f"{base}:usd:d:{day}", _DAY_TTL_S)
            pipe.incrbyfloat(f"{base}:usd:m:{month}", cost_usd)
            pipe.expire(f"{base}:usd:m:{month}", _MONTH_TTL_S)
        await self._call(pipe.execute())

    async def spend(self, name: str, now_s: float) -> tuple[float, float]:
        """(today, this month) spend of ``name`` in USD."""
        _, day, month, _ = _windows(now_s)
        base = f"{_PREFIX}:{{{name}}}"
        day_usd, month_usd = await self._call(
            self._redis.mget(f"{base}:usd:d:{day}", f"{base}:usd:m:{month}")
        )
        return float(day_usd or 0), float(month_usd or 0)

    async def create_key(self, key: StoredKey) -> bool:
        """Store a new key; ``False`` when its name is taken (HSETNX on the name index)."""
        if not await self._call(self._redis.hsetnx(f"{_PREFIX}:names", key.name, key.key_sha256)):
            return False
        await self._call(self._redis.hset(f"{_PREFIX}:keys", key.key_sha256, key.to_json()))
        return True

    async def get_key(self, key_sha256: str) -> StoredKey | None:
        """The run-time key with this hash, if any."""
        raw = await self._call(self._redis.hget(f"{_PREFIX}:keys", key_sha256))
        return StoredKey.from_json(raw) if raw is not None else None

    async def list_keys(self) -> list[StoredKey]:
        """Every run-time key, by name."""
        raw = await self._call(self._redis.hgetall(f"{_PREFIX}:keys"))
        return sorted((StoredKey.from_json(v) for v in raw.values()), key=lambda k: k.name)

    async def revoke_key(self, name: str) -> bool:
        """Delete the run-time key ``name``; ``False`` when there is none."""
        sha = await self._call(self._redis.hget(f"{_PREFIX}:names", name))
        if sha is None:
            return False
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(f"{_PREFIX}:keys", sha)
        pipe.hdel(f"{_PREFIX}:names", name)
        await self._call(pipe.execute())
        return True

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
