"""Decision cache: the in-process LRU, and Redis against a real redis-server (fail-open)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from proxy.decide.cache import (
    LruDecisionCache,
    RedisDecisionCache,
    build_cache,
    redact_url,
)
from tests.redis_server import RedisServer

DECISION: dict[str, Any] = {
    "policy": "auto",
    "arm": "strong",
    "n": 1,
    "predicted_gain": 0.25,
    "extra": {"p": [0.5, 0.75]},
}
PREFIX = "adaptive:decision:"
WARNING_TEXT = "decision cache: Redis at"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingMetrics:
    """Counts what a cache reports (implements ``proxy.observe.metrics.CacheMetrics``)."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.errors: Counter[str] = Counter()

    def cache_hit(self) -> None:
        self.hits += 1

    def cache_miss(self) -> None:
        self.misses += 1

    def cache_error(self, op: str) -> None:
        self.errors[op] += 1


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.levelno == logging.WARNING and WARNING_TEXT in r.getMessage()
    ]


# --- LRU -----------------------------------------------------------------------------------


async def test_lru_hit_and_miss_are_counted() -> None:
    metrics = RecordingMetrics()
    cache = LruDecisionCache(max_entries=8, ttl_s=60, metrics=metrics)
    assert cache.backend == "lru"
    assert await cache.get("k") is None
    await cache.set("k", DECISION)
    assert await cache.get("k") == DECISION
    assert (metrics.hits, metrics.misses) == (1, 1)
    assert await cache.ping() is True
    await cache.aclose()


async def test_lru_entries_expire_after_ttl() -> None:
    clock = FakeClock()
    cache = LruDecisionCache(max_entries=8, ttl_s=30, clock=clock)
    await cache.set("k", DECISION)
    clock.advance(29.9)
    assert await cache.get("k") == DECISION
    clock.advance(0.2)
    assert await cache.get("k") is None
    assert len(cache) == 0


async def test_lru_evicts_least_recently_used() -> None:
    cache = LruDecisionCache(max_entries=2, ttl_s=60)
    await cache.set("a", {"v": "a"})
    await cache.set("b", {"v": "b"})
    assert await cache.get("a") == {"v": "a"}  # a is now the most recently used
    await cache.set("c", {"v": "c"})
    assert await cache.get("b") is None
    assert await cache.get("a") == {"v": "a"}
    assert await cache.get("c") == {"v": "c"}
    assert len(cache) == 2


async def test_lru_set_refreshes_ttl_and_recency() -> None:
    clock = FakeClock()
    cache = LruDecisionCache(max_entries=2, ttl_s=10, clock=clock)
    await cache.set("a", {"v": 1})
    await cache.set("b", {"v": 2})
    clock.advance(8)
    await cache.set("a", {"v": 3})
    await cache.set("c", {"v": 4})  # evicts b, not the re-set a
    clock.advance(5)
    assert await cache.get("a") == {"v": 3}
    assert await cache.get("b") is None


def test_lru_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        LruDecisionCache(max_entries=0, ttl_s=1)
    with pytest.raises(ValueError, match="ttl_s"):
        LruDecisionCache(max_entries=1, ttl_s=0)


# --- Redis ---------------------------------------------------------------------------------


async def test_redis_round_trip_with_ttl(redis_server: RedisServer) -> None:
    metrics = RecordingMetrics()
    cache = RedisDecisionCache(redis_server.url, ttl_s=30, timeout_s=1.0, metrics=metrics)
    raw = Redis.from_url(redis_server.url)
    try:
        assert cache.backend == "redis"
        assert await cache.ping() is True
        assert await cache.get("k") is None
        await cache.set("k", DECISION)
        assert await cache.get("k") == DECISION
        assert (metrics.hits, metrics.misses) == (1, 1)
        # Stored under the prefix, as JSON, with the TTL.
        ttl_ms = await raw.pttl(PREFIX + "k")
        assert 0 < ttl_ms <= 30_000
        assert await raw.get(PREFIX + "k") is not None
    finally:
        await raw.aclose()
        await cache.aclose()


async def test_redis_entry_expires(redis_server: RedisServer) -> None:
    cache = RedisDecisionCache(redis_server.url, ttl_s=0.1, timeout_s=1.0)
    try:
        await cache.set("k", DECISION)
        # Poll (bounded) rather than assert a duration: Redis expires the key by itself.
        for _ in range(100):
            if await cache.get("k") is None:
                break
            await asyncio.sleep(0.02)
        assert await cache.get("k") is None
    finally:
        await cache.aclose()


async def test_redis_garbage_value_is_a_miss(redis_server: RedisServer) -> None:
    metrics = RecordingMetrics()
    cache = RedisDecisionCache(redis_server.url, ttl_s=30, timeout_s=1.0, metrics=metrics)
    raw = Redis.from_url(redis_server.url)
    try:
        await raw.set(PREFIX + "bad", b"not json{")
        assert await cache.get("bad") is None
        assert metrics.errors["decode"] == 1
        assert cache.available
    finally:
        await raw.aclose()
        await cache.aclose()


async def test_redis_crash_fails_open_and_recovers_by_itself(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.decide.cache")
    clock = FakeClock()
    metrics = RecordingMetrics()
    cache = RedisDecisionCache(
        redis_server.url, ttl_s=60, timeout_s=0.5, metrics=metrics, clock=clock
    )
    try:
        await cache.set("k", DECISION)
        assert await cache.get("k") == DECISION

        redis_server.kill()
        assert await cache.get("k") is None
        await cache.set("k2", DECISION)  # dropped, does not raise
        assert not cache.available
        # Past each back-off the cache probes Redis again; still down, still quiet.
        for _ in range(3):
            clock.advance(11)
            assert await cache.get("k") is None
        assert await cache.ping() is False
        assert len(outage_warnings(caplog)) == 1
        assert metrics.errors["get"] == 4
        assert metrics.errors["ping"] == 1
        assert metrics.errors["set"] == 0  # the set fell inside the back-off: skipped, not tried

        redis_server.restart()  # same port, same cache object
        clock.advance(11)
        assert await cache.get("k") is None  # the probe succeeds; the data set is empty
        assert cache.available
        await cache.set("k", DECISION)
        assert await cache.get("k") == DECISION
        back = [r for r in caplog.records if "Redis back" in r.getMessage()]
        assert len(back) == 1
        assert len(outage_warnings(caplog)) == 1
    finally:
        await cache.aclose()


async def test_redis_back_off_skips_redis_between_probes(redis_server: RedisServer) -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    cache = RedisDecisionCache(
        redis_server.url, ttl_s=60, timeout_s=0.5, metrics=metrics, clock=clock
    )
    try:
        redis_server.kill()
        for _ in range(20):
            assert await cache.get("k") is None
        assert metrics.errors["get"] == 1  # only the first call reached Redis
        assert metrics.misses == 20
        redis_server.restart()
        assert await cache.get("k") is None
        assert not cache.available  # still inside the back-off: Redis not asked yet
        clock.advance(1.5)
        await cache.set("k", DECISION)
        assert cache.available
        assert await cache.get("k") == DECISION
    finally:
        await cache.aclose()


async def test_redis_outage_served_by_fallback_lru(redis_server: RedisServer) -> None:
    clock = FakeClock()
    fallback = LruDecisionCache(max_entries=16, ttl_s=60, clock=clock)
    cache = RedisDecisionCache(
        redis_server.url, ttl_s=60, timeout_s=0.5, fallback=fallback, clock=clock
    )
    try:
        await cache.set("warm", DECISION)  # written through to the fallback too
        redis_server.kill()
        assert await cache.get("warm") == DECISION
        await cache.set("during", {"arm": "cheap"})
        assert await cache.get("during") == {"arm": "cheap"}
        assert await cache.get("absent") is None
    finally:
        await cache.aclose()


async def test_hung_redis_is_bounded_by_the_timeout(redis_server: RedisServer) -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    cache = RedisDecisionCache(
        redis_server.url, ttl_s=60, timeout_s=0.05, metrics=metrics, clock=clock
    )
    try:
        await cache.set("k", DECISION)
        await cache.set("k2", {"arm": "cheap"})
        redis_server.pause()
        try:
            assert await cache.get("k") is None
        finally:
            redis_server.resume()
        assert metrics.errors["get"] == 1
        assert not cache.available
        # The abandoned reply must not leak into later commands on a pooled connection.
        clock.advance(1.5)
        assert await cache.get("k2") == {"arm": "cheap"}
        assert await cache.get("missing") is None
        assert await cache.get("k") == DECISION
        assert cache.available
    finally:
        await cache.aclose()


async def test_unreachable_redis_at_start_never_raises(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://admin:s3cret-pw@127.0.0.1:{redis_server.port}/0"
    redis_server.stop()
    cache = build_cache(redis_url=url, ttl_s=60, max_entries=16, timeout_s=0.5, metrics=None)
    try:
        assert cache.backend == "redis"
        assert await cache.ping() is False
        await cache.set("k", DECISION)
        assert await cache.get("k") == DECISION  # from the built-in fallback LRU
        warnings = outage_warnings(caplog)
        assert len(warnings) == 1
        message = warnings[0].getMessage()
        assert f"redis://127.0.0.1:{redis_server.port}/0" in message
        assert "s3cret" not in caplog.text and "admin" not in caplog.text
    finally:
        await cache.aclose()


async def test_build_cache_without_redis_is_the_lru() -> None:
    metrics = RecordingMetrics()
    cache = build_cache(redis_url=None, ttl_s=60, max_entries=4, timeout_s=0.05, metrics=metrics)
    assert cache.backend == "lru"
    await cache.set("k", DECISION)
    assert await cache.get("k") == DECISION
    assert metrics.hits == 1
    await cache.aclose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://user:pw@host:6379/0", "redis://host:6379/0"),
        ("rediss://:pw@[::1]:6380/2?password=pw", "rediss://[::1]:6380/2"),
        ("redis://localhost", "redis://localhost"),
    ],
)
def test_redact_url_drops_credentials(url: str, expected: str) -> None:
    assert redact_url(url) == expected


async def test_one_slow_answer_while_redis_is_up_is_not_an_outage(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.decide.cache")
    metrics = RecordingMetrics()
    cache = RedisDecisionCache(redis_server.url, ttl_s=60, timeout_s=0.3, metrics=metrics)
    try:
        await cache.set("k", DECISION)
        # Redis stalls for longer than one timeout, but less than two: the first try times
        # out, the retry on a fresh connection is answered.
        redis_server.pause()
        pending = asyncio.create_task(cache.get("k"))
        await asyncio.sleep(0.45)
        redis_server.resume()
        assert await pending == DECISION
        assert cache.available
        assert outage_warnings(caplog) == []
        assert not [r for r in caplog.records if "Redis back" in r.getMessage()]
        assert sum(metrics.errors.values()) == 0
    finally:
        redis_server.resume()
        await cache.aclose()


async def test_l1_serves_hot_decisions_without_a_round_trip(redis_server: RedisServer) -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    cache = RedisDecisionCache(
        redis_server.url, ttl_s=60, timeout_s=0.5, metrics=metrics, clock=clock, l1_ttl_s=5
    )
    other_replica = RedisDecisionCache(redis_server.url, ttl_s=60, timeout_s=0.5)
    try:
        await other_replica.set("k", DECISION)
        assert await cache.get("k") == DECISION  # from Redis, now also in L1
        redis_server.pause()  # Redis cannot answer: only L1 can
        assert await cache.get("k") == DECISION
        assert sum(metrics.errors.values()) == 0
        redis_server.resume()
        await other_replica.set("k", {**DECISION, "arm": "weak"})
        assert (await cache.get("k") or {})["arm"] == "strong"  # L1 still fresh
        clock.advance(6)  # past l1_ttl_s: the replaced decision is read from Redis
        assert (await cache.get("k") or {})["arm"] == "weak"
    finally:
        redis_server.resume()
        await cache.aclose()
        await other_replica.aclose()
