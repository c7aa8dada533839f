"""Where response ids live: a bounded map in the process, or Redis shared by replicas."""

from __future__ import annotations

from proxy.http.response_homes import ResponseHome, ResponseHomes
from proxy.wire.redis_client import make_redis
from tests.redis_server import RedisServer


async def test_the_in_process_map_keeps_the_newest_ids() -> None:
    homes = ResponseHomes(max_entries=2)
    for name in ("a", "b", "c"):
        await homes.put(f"resp_{name}", ResponseHome(upstream=name))
    assert await homes.get("resp_a") is None
    assert await homes.get("resp_c") == ResponseHome(upstream="c")


async def test_redis_homes_are_seen_by_another_client(redis_server: RedisServer) -> None:
    conversation = ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"})

    def client() -> ResponseHomes:
        redis = make_redis(
            redis_server.url, timeout_s=1.0, max_connections=2, health_check_interval_s=0
        )
        return ResponseHomes(redis=redis, timeout_s=1.0)

    writer, reader = client(), client()
    try:
        await writer.put("resp_1", ResponseHome(messages=conversation))
        await writer.put("resp_2", ResponseHome(upstream="gpt"))
        assert await reader.get("resp_1") == ResponseHome(messages=conversation)
        assert await reader.get("resp_2") == ResponseHome(upstream="gpt")
        assert await reader.get("resp_3") is None
        redis_server.kill()
        assert await reader.get("resp_1") is None  # Redis down: unknown, not an error
    finally:
        await writer.aclose()
        await reader.aclose()
