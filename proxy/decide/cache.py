"""Decision cache: Redis (``redis.asyncio``) or an in-process LRU; Redis fails open.

A cache failure must never fail a request: ``get`` and ``set`` never raise. When Redis is down or
slow, gets miss (or are served by an optional in-process fallback LRU), one WARNING is logged per
outage, each failed operation is counted, and Redis is probed again after a back-off (1 s doubling
to 10 s) so that an outage does not cost a timeout on every request. Recovery is automatic.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import orjson

from proxy.observe.metrics import CacheMetrics
from proxy.wire.redis_client import call_with_fresh_retry, make_redis

log = logging.getLogger(__name__)

Clock = Callable[[], float]

BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 10.0


class DecisionCache(Protocol):
    """Where decisions (JSON-able dicts) are kept between requests."""

    backend: str  # "lru" | "redis"

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached decision, or None on a miss or any failure; never raises."""
        ...

    async def set(self, key: str, value: dict[str, Any]) -> None:
        """Store a decision with the configured TTL; failures are dropped, never raised."""
        ...

    async def ping(self) -> bool:
        """Whether the backend is reachable (readiness)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class LruDecisionCache:
    """Bounded in-process LRU with a TTL checked on read; O(1) per operation.

    Values are stored and returned as the same objects (no copy, this runs per request):
    callers must not mutate a dict after ``set`` or one returned by ``get``.
    """

    backend = "lru"

    def __init__(
        self,
        *,
        max_entries: int,
        ttl_s: float,
        clock: Clock = time.monotonic,
        metrics: CacheMetrics | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        self._metrics = metrics
        # key -> (expires_at, value)
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get_now(self, key: str) -> dict[str, Any] | None:
        """Synchronous ``get`` without metrics (used as Redis's fallback)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def set_now(self, key: str, value: dict[str, Any]) -> None:
        """Synchronous ``set``; evicts the least recently used entry when full."""
        entries = self._entries
        entries[key] = (self._clock() + self._ttl_s, value)
        entries.move_to_end(key)
        if len(entries) > self._max_entries:
            entries.popitem(last=False)

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached decision, or None when absent or expired."""
        value = self.get_now(key)
        if self._metrics is not None:
            if value is None:
                self._metrics.cache_miss()
            else:
                self._metrics.cache_hit()
        return value

    async def set(self, key: str, value: dict[str, Any]) -> None:
        """Store a decision for ``ttl_s`` seconds."""
        self.set_now(key, value)

    async def ping(self) -> bool:
        """Always ready."""
        return True

    async def aclose(self) -> None:
        """Drop every entry."""
        self._entries.clear()


def redact_url(url: str) -> str:
    """``url`` without credentials or query (which may carry ``password=``), safe to log."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
    except ValueError:
        return "<unparsable redis url>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RedisDecisionCache:
    """Decisions in Redis as orjson, ``SET key value PX ttl``; fails open.

    Every operation is bounded by ``timeout_s``. After a failure Redis is skipped for a back-off
    (1 s doubling to 10 s), then one request probes it again; the first success ends the outage.
    With a ``fallback`` LRU, every ``set`` is also written to it (so it is warm when Redis goes
    away) and it serves reads only while Redis is unavailable.
    """

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        timeout_s: float = 0.05,
        key_prefix: str = "adaptive:decision:",
        metrics: CacheMetrics | None = None,
        fallback: LruDecisionCache | None = None,
        clock: Clock = time.monotonic,
        max_connections: int = 64,
        health_check_interval_s: float = 10.0,
        l1_ttl_s: float = 0.0,
        l1_max_entries: int = 4096,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self._url_for_logs = redact_url(url)
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._timeout_s = timeout_s
        self._prefix = key_prefix
        self._metrics = metrics
        self._fallback = fallback
        self._clock = clock
        # A hot decision is served from process memory for ``l1_ttl_s`` without a round trip;
        # short-lived, so a decision another replica replaced is seen soon after.
        self._l1 = (
            LruDecisionCache(max_entries=l1_max_entries, ttl_s=l1_ttl_s, clock=clock)
            if l1_ttl_s > 0
            else None
        )
        self._down = False
        self._backoff_s = BACKOFF_INITIAL_S
        self._retry_at = 0.0
        self._client = make_redis(
            url,
            timeout_s=timeout_s,
            max_connections=max_connections,
            health_check_interval_s=health_check_interval_s,
        )

    @property
    def available(self) -> bool:
        """False while an outage is in progress."""
        return not self._down

    def _should_try(self) -> bool:
        if not self._down:
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        # Claim this probe: concurrent requests keep skipping until it resolves.
        self._retry_at = now + self._backoff_s
        return True

    async def _call(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        # While Redis is up, one failure gets a second chance on a fresh connection before it
        # counts as an outage; during an outage, one probe is enough.
        return await call_with_fresh_retry(
            self._client, operation, timeout_s=self._timeout_s, retry=not self._down
        )

    def _on_failure(self, op: str, exc: BaseException) -> None:
        if self._metrics is not None:
            self._metrics.cache_error(op)
        if self._down:
            self._backoff_s = min(self._backoff_s * 2, BACKOFF_MAX_S)
        else:
            self._down = True
            self._backoff_s = BACKOFF_INITIAL_S
            log.warning(
                "decision cache: Redis at %s unavailable (%s); serving without it",
                self._url_for_logs,
                _describe(exc),
            )
        self._retry_at = self._clock() + self._backoff_s

    def _on_success(self) -> None:
        if self._down:
            self._down = False
            self._backoff_s = BACKOFF_INITIAL_S
            log.info("decision cache: Redis back at %s", self._url_for_logs)

    def _count(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if self._metrics is not None:
            if value is None:
                self._metrics.cache_miss()
            else:
                self._metrics.cache_hit()
        return value

    def _from_fallback(self, key: str) -> dict[str, Any] | None:
        return self._count(self._fallback.get_now(key) if self._fallback is not None else None)

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached decision, or None on a miss or failure (then the fallback, if any)."""
        if self._l1 is not None and (near := self._l1.get_now(key)) is not None:
            return self._count(near)
        if not self._should_try():
            return self._from_fallback(key)
        try:
            raw = await self._call(lambda: self._client.get(self._prefix + key))
        except Exception as exc:  # fail open: any client error is an outage, never a 500
            self._on_failure("get", exc)
            return self._from_fallback(key)
        self._on_success()
        if raw is None:
            return self._count(None)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            # Written by something else or corrupted: a miss, and the next set overwrites it.
            if self._metrics is not None:
                self._metrics.cache_error("decode")
            return self._count(None)
        if not isinstance(value, dict):
            return self._count(None)
        if self._l1 is not None:
            self._l1.set_now(key, value)
        return self._count(value)

    async def set(self, key: str, value: dict[str, Any]) -> None:
        """Store with the TTL; dropped (kept only in the fallback) when Redis is unavailable."""
        if self._fallback is not None:
            self._fallback.set_now(key, value)
        if self._l1 is not None:
            self._l1.set_now(key, value)
        try:
            payload = orjson.dumps(value)
        except TypeError:
            # A caller bug, not an outage: count it, never mark Redis down for it.
            if self._metrics is not None:
                self._metrics.cache_error("encode")
            return
        if not self._should_try():
            return
        try:
            await self._call(lambda: self._client.set(self._prefix + key, payload, px=self._ttl_ms))
        except Exception as exc:  # fail open
            self._on_failure("set", exc)
            return
        self._on_success()

    async def ping(self) -> bool:
        """Whether Redis answers PING within the timeout (ignores the back-off)."""
        try:
            await self._call(self._client.ping)
        except Exception as exc:  # readiness reports, never raises
            self._on_failure("ping", exc)
            return False
        self._on_success()
        return True

    async def aclose(self) -> None:
        """Close the client and its connection pool."""
        await self._client.aclose()
        if self._fallback is not None:
            await self._fallback.aclose()


def build_cache(
    *,
    redis_url: str | None,
    ttl_s: float,
    max_entries: int,
    timeout_s: float,
    metrics: CacheMetrics | None,
    max_connections: int = 64,
    health_check_interval_s: float = 10.0,
    l1_ttl_s: float = 0.0,
    l1_max_entries: int = 4096,
) -> DecisionCache:
    """Redis with an LRU fallback when ``redis_url`` is set, else the LRU alone."""
    if redis_url:
        fallback = LruDecisionCache(max_entries=max_entries, ttl_s=ttl_s)
        return RedisDecisionCache(
            redis_url,
            ttl_s=ttl_s,
            timeout_s=timeout_s,
            metrics=metrics,
            fallback=fallback,
            max_connections=max_connections,
            health_check_interval_s=health_check_interval_s,
            l1_ttl_s=l1_ttl_s,
            l1_max_entries=l1_max_entries,
        )
    return LruDecisionCache(max_entries=max_entries, ttl_s=ttl_s, metrics=metrics)
