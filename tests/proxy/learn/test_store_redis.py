"""The shared store on a real redis-server: bounded streams, MINID retention, replicas, outages."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from proxy.learn.store import OutcomeStoreError
from tests.proxy.learn.builders import collect, make_label, make_record, redis_store
from tests.redis_server import RedisServer

DAY_S = 86_400.0


async def test_each_policy_stream_is_bounded(redis_server: RedisServer) -> None:
    store = redis_store(redis_server.url, max_entries=200)
    client = Redis.from_url(redis_server.url)
    try:
        for start in range(0, 2000, 250):
            await store.write([make_record(f"r{i}") for i in range(start, start + 250)])
        length = await client.xlen("adaptive:learn:s:router")
        # MAXLEN ~ trims whole stream nodes (100 entries by default): at least the bound stays.
        assert 200 <= length < 400
        assert (await store.get("r0")).status == "expired"
        assert (await store.get("r1999")).status == "found"
    finally:
        await store.aclose()
        await client.aclose()


async def test_retention_trims_by_minid(redis_server: RedisServer) -> None:
    store = redis_store(redis_server.url, retention_days=1)
    client = Redis.from_url(redis_server.url)
    try:
        await store.write([make_record(f"r{i}") for i in range(300)])
        await store.write([make_label(f"r{i}") for i in range(300)])
        assert await store.trim(time.time()) == 0
        assert await store.trim(time.time() + 2 * DAY_S) > 0
        # MINID ~ keeps at most the newest stream node (100 entries by default).
        assert await client.xlen("adaptive:learn:s:router") <= 100
        # The index outlives the entries, so a trimmed id reads as expired, not unknown.
        assert {(await store.get(f"r{i}")).status for i in (0, 299)} == {"expired"}
    finally:
        await store.aclose()
        await client.aclose()


async def test_replicas_share_one_log(redis_server: RedisServer) -> None:
    first, second = redis_store(redis_server.url), redis_store(redis_server.url)
    try:
        await first.write([make_record("r1")])
        await second.write([make_label("r1", kind="feedback", reward=1.0)])
        found = await first.get("r1")
        assert found.status == "found" and [lbl.reward for lbl in found.labels] == [1.0]
        [item] = await collect(second, "router")
        assert item.record.request_id == "r1"
    finally:
        await first.aclose()
        await second.aclose()


async def test_an_unreachable_redis_is_a_store_error(redis_server: RedisServer) -> None:
    store = redis_store(redis_server.url)
    try:
        await store.write([make_record("r1")])
        redis_server.kill()
        with pytest.raises(OutcomeStoreError) as caught:
            await store.get("r1")
        assert caught.value.status == 503
        with pytest.raises(OutcomeStoreError):
            await store.write([make_record("r2")])
    finally:
        await store.aclose()


async def test_a_shared_client_is_left_open(redis_server: RedisServer) -> None:
    from proxy.learn.store_redis import RedisOutcomeStore

    client = Redis.from_url(redis_server.url)
    store = RedisOutcomeStore(client, retention_days=1, owns_client=False)
    await store.write([make_record("r1")])
    await store.aclose()
    try:
        assert await client.ping()
    finally:
        await client.aclose()
