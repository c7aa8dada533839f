"""Realised cost per arm: reasoning tokens counted, a mean per (upstream, overrides), pooled
through a real Redis."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from proxy.config.schema import UpstreamConfig
from proxy.upstream.arm_usage import ARM_USAGE_KEY
from proxy.upstream.pricing import CostModel, billed_tokens, reasoning_tokens_of
from tests.redis_server import RedisServer

UPSTREAMS = {
    "o-model": UpstreamConfig(
        base_url="http://127.0.0.1:9/v1",
        model="o-fake",
        price_in_per_mtok_usd=1.0,
        price_out_per_mtok_usd=10.0,
    )
}
LOW = {"reasoning_effort": "low"}
HIGH = {"reasoning_effort": "high"}


def test_reasoning_tokens_are_billed_once() -> None:
    chat = {
        "prompt_tokens": 7,
        "completion_tokens": 403,
        "completion_tokens_details": {"reasoning_tokens": 400},
    }
    assert reasoning_tokens_of(chat) == 400
    assert billed_tokens(chat) == (7, 403)  # OpenAI counts them inside completion_tokens
    apart = {**chat, "completion_tokens": 3}
    assert billed_tokens(apart) == (7, 403)  # an upstream that counts them apart
    responses = {
        "input_tokens": 7,
        "output_tokens": 403,
        "output_tokens_details": {"reasoning_tokens": 400},
    }
    assert reasoning_tokens_of(responses) == 400
    assert billed_tokens(responses) == (7, 403)
    assert billed_tokens({"prompt_tokens": 7}) is None


def test_each_effort_of_one_upstream_has_its_own_running_mean() -> None:
    costs = CostModel(UPSTREAMS, prior_completion_tokens=256)
    prior = costs.expected_cost_usd("o-model", 100, overrides=HIGH)
    assert prior == costs.expected_cost_usd("o-model", 100, overrides=LOW)
    assert costs.observe("o-model", 100, 403, overrides=HIGH) == pytest.approx(4.13e-3)
    costs.observe("o-model", 100, 23, overrides=LOW)
    costs.observe("o-model", 100, 43, overrides=LOW)
    assert costs.mean_completion_tokens("o-model", HIGH) == 403
    assert costs.mean_completion_tokens("o-model", LOW) == 33  # the mean of 23 and 43
    assert costs.expected_cost_usd("o-model", 100, 2, overrides=LOW) == pytest.approx(
        2 * (100 + 33 * 10) / 1e6
    )
    # The upstream's own mean (an arm without overrides) is untouched by its effort arms.
    assert costs.mean_completion_tokens("o-model") == 256
    # A max_completion_tokens override caps what an answer can cost.
    assert costs.mean_completion_tokens("o-model", {"max_completion_tokens": 100}) == 100


async def test_replicas_pool_their_arm_means_through_redis(redis_server: RedisServer) -> None:
    first, second = CostModel(UPSTREAMS), CostModel(UPSTREAMS)
    redis = aioredis.from_url(redis_server.url)
    try:
        await first.share_through(redis)
        first.observe("o-model", 100, 403, overrides=HIGH)
        first.observe("o-model", 100, 23, overrides=LOW)
        await first.flush()
        # A replica starting now prices both efforts from the first one's answers.
        await second.share_through(redis)
        assert second.mean_completion_tokens("o-model", HIGH) == 403
        assert second.mean_completion_tokens("o-model", LOW) == 23
        second.observe("o-model", 100, 203, overrides=HIGH)
        await second.flush()
        assert second.mean_completion_tokens("o-model", HIGH) == 303  # (403 + 203) / 2
        stored = await redis.hgetall(ARM_USAGE_KEY)
        assert float(stored[b"o-model[reasoning_effort=high]|count"]) == 2
    finally:
        await redis.aclose()


async def test_redis_down_leaves_the_local_means_serving() -> None:
    costs = CostModel(UPSTREAMS)
    redis = aioredis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.2)
    try:
        await costs.share_through(redis, timeout_s=0.5)
        costs.observe("o-model", 100, 403, overrides=HIGH)
        await costs.flush()
        assert costs.mean_completion_tokens("o-model", HIGH) == 403
    finally:
        await redis.aclose()
