"""A four-arm ladder and a budget the proxy keeps by itself, through the live proxy.

Upstreams are :class:`tests.proxy.fake_upstream.FakeUpstream` servers; the SDK is the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from openai import AsyncOpenAI

from proxy.config.schema import Config
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from tests.proxy.fake_upstream import FakeUpstream, Reply, completion
from tests.redis_server import RedisServer
from tests.servers import running

ARMS = ("c1", "c4", "s1", "s4")
# Explicit arm costs keep the choice independent of the cost model's running token means.
ARM_COSTS_USD = {"c1": 0.001, "c4": 0.004, "s1": 0.02, "s4": 0.08}
LADDER_LAMBDA = 10.0  # λ·cost: 0.01, 0.04, 0.2, 0.8


def rewards(c1: float, c4: float, s1: float, s4: float) -> dict[str, float]:
    return {"r_c1": c1, "r_c4": c4, "r_s1": s1, "r_s4": s4}


# reward − λ·cost per arm, the winner marked: each prompt steers to a different arm.
STEERED = {
    "prompt-cheap1": (rewards(0.5, 0.5, 0.5, 0.5), "c1"),  # 0.49*, 0.46, 0.30, -0.30
    "prompt-cheap4": (rewards(0.3, 0.8, 0.6, 0.9), "c4"),  # 0.29, 0.76*, 0.40, 0.10
    "prompt-strong1": (rewards(0.2, 0.3, 0.9, 0.95), "s1"),  # 0.19, 0.26, 0.70*, 0.15
    "prompt-strong4": (rewards(0.0, 0.0, 0.1, 1.0), "s4"),  # 0.0, -0.04, -0.10, 0.20*
}


def ladder_config(cheap_url: str, strong_url: str) -> Config:
    arms: list[dict[str, Any]] = [
        {"name": "c1", "upstream": "cheap", "n": 1, "predictor_output": "r_c1"},
        {
            "name": "c4",
            "upstream": "cheap",
            "n": 4,
            "predictor_output": "r_c4",
            "reranker": {"type": "vote"},
        },
        {"name": "s1", "upstream": "strong", "n": 1, "predictor_output": "r_s1"},
        {
            "name": "s4",
            "upstream": "strong",
            "n": 4,
            "predictor_output": "r_s4",
            "reranker": {"type": "first"},
        },
    ]
    for arm in arms:
        arm["cost_usd"] = ARM_COSTS_USD[arm["name"]]
    return Config.model_validate(
        {
            "server": {"reload": False},
            "upstreams": {
                "cheap": {"base_url": cheap_url, "model": "cheap-model", "retries": 0},
                "strong": {"base_url": strong_url, "model": "strong-model", "retries": 0},
            },
            "policies": {"ladder": {"type": "ladder", "lambda": LADDER_LAMBDA, "arms": arms}},
        }
    )


def four_choices(model: str, answers: tuple[str, ...]) -> Reply:
    body = completion(model)
    body["choices"] = [
        {"index": i, "message": {"role": "assistant", "content": a}, "finish_reason": "stop"}
        for i, a in enumerate(answers)
    ]
    return Reply(body=body)


VOTES = ("The answer is 5", "The answer is 6", "so the answer is 6", "The answer is 7")


async def test_ladder_with_four_arms_picks_by_reward_minus_cost() -> None:
    cheap, strong = FakeUpstream(), FakeUpstream()
    predictor = HashPredictor({k: v for k, (v, _) in STEERED.items()})
    try:
        config = ladder_config(await cheap.start(), await strong.start())
        async with (
            running(create_app(config, predictor=predictor)) as url,
            AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
        ):
            seen: dict[str, Any] = {}
            for prompt, (_, arm) in STEERED.items():
                if arm == "c4":
                    cheap.script(four_choices("cheap-model", VOTES))
                if arm == "s4":
                    strong.script(four_choices("strong-model", VOTES))
                raw = await client.chat.completions.with_raw_response.create(
                    model="ladder", messages=[{"role": "user", "content": prompt}]
                )
                assert raw.headers["x-adaptive-arm"] == arm, prompt
                seen[arm] = (raw.headers, raw.parse())
    finally:
        await cheap.close()
        await strong.close()
    # Single-sample arms pass through: one call without n, the upstream's answer as is.
    assert seen["c1"][1].choices[0].message.content == "hello"
    assert seen["c1"][0]["x-adaptive-n"] == "1"
    assert [r.body.get("n") for r in cheap.requests] == [None, 4]
    assert [r.body.get("n") for r in strong.requests] == [None, 4]
    assert {r.body["model"] for r in strong.requests} == {"strong-model"}
    # n>1 arms run best-of-k with the arm's own reranker.
    c4_headers, c4 = seen["c4"]
    assert c4_headers["x-adaptive-n"] == "4"
    c4_adaptive = (c4.model_extra or {})["adaptive"]
    assert c4_adaptive["reranker"] == "vote" and c4_adaptive["n"] == 4
    assert c4.choices[0].message.content == "The answer is 6"
    s4 = seen["s4"][1]
    assert (s4.model_extra or {})["adaptive"]["reranker"] == "first"
    assert s4.choices[0].message.content == "The answer is 5"
    assert (s4.model_extra or {})["adaptive"]["expected_cost_usd"] == ARM_COSTS_USD["s4"]


async def test_a_multi_sample_arm_draws_at_least_the_clients_n() -> None:
    cheap, strong = FakeUpstream(), FakeUpstream()
    predictor = HashPredictor({k: v for k, (v, _) in STEERED.items()})
    try:
        config = ladder_config(await cheap.start(), await strong.start())
        async with (
            running(create_app(config, predictor=predictor)) as url,
            AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
        ):
            raw = await client.chat.completions.with_raw_response.create(
                model="ladder", messages=[{"role": "user", "content": "prompt-cheap4"}], n=6
            )
    finally:
        await cheap.close()
        await strong.close()
    out = raw.parse()
    adaptive = (out.model_extra or {})["adaptive"]
    assert [c.index for c in out.choices] == list(range(6))
    assert raw.headers["x-adaptive-arm"] == "c4"  # the arm the ladder chose, with 6 samples
    assert raw.headers["x-adaptive-n"] == raw.headers["x-adaptive-choices"] == "6"
    assert adaptive["n"] == adaptive["choices"] == 6
    assert adaptive["expected_cost_usd"] == pytest.approx(ARM_COSTS_USD["c4"] * 6 / 4)
    assert cheap.requests[0].body["n"] == 6


TARGET = 0.3
WARMUP = 60
REQUESTS = 300


def budget_config(cheap_url: str, strong_url: str, redis_url: str | None = None) -> Config:
    prices = {"retries": 0}
    return Config.model_validate(
        {
            "server": {"reload": False},
            "upstreams": {
                "cheap": {
                    "base_url": cheap_url,
                    "model": "cheap-model",
                    "price_in_per_mtok_usd": 0.5,
                    "price_out_per_mtok_usd": 1.5,
                }
                | prices,
                "strong": {
                    "base_url": strong_url,
                    "model": "strong-model",
                    "price_in_per_mtok_usd": 10.0,
                    "price_out_per_mtok_usd": 30.0,
                }
                | prices,
            },
            "policies": {
                "budgeted": {
                    "type": "route",
                    "cheap": "cheap",
                    "expensive": "strong",
                    "predictor_output": "gain",
                    "budget": {"kind": "fraction_expensive", "target": TARGET, "window": 200},
                }
            },
            "cache": {"redis_url": redis_url} if redis_url else {},
        }
    )


def prompt(i: int) -> list[Any]:
    # Distinct prompts: the hash predictor's gain p_strong − p_weak spreads over [-1, 1].
    return [{"role": "user", "content": f"Question {i}: what is {i} times {i + 7}?"}]


async def arm_of(client: AsyncOpenAI, i: int) -> str:
    raw = await client.chat.completions.with_raw_response.create(
        model="budgeted", messages=prompt(i)
    )
    assert raw.parse().choices[0].message.content == "hello"
    return raw.headers["x-adaptive-arm"]


async def get_json(url: str, body: dict[str, Any] | None = None) -> Any:
    async with aiohttp.ClientSession() as session:
        if body is None:
            async with session.get(url) as response:
                return await response.text()
        async with session.post(url, json=body) as response:
            assert response.status == 200
            return await response.json()


@pytest.fixture
async def upstream_urls() -> AsyncIterator[tuple[str, str]]:
    cheap, strong = FakeUpstream(), FakeUpstream()
    try:
        yield await cheap.start(), await strong.start()
    finally:
        await cheap.close()
        await strong.close()


async def test_budget_keeps_the_expensive_fraction_near_its_target(
    upstream_urls: tuple[str, str],
) -> None:
    app = create_app(budget_config(*upstream_urls), predictor=HashPredictor())
    async with (
        running(app) as url,
        AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
    ):
        arms = [await arm_of(client, i) for i in range(REQUESTS)]
        decided = await get_json(
            f"{url}/v1/adaptive/decide", {"model": "budgeted", "messages": prompt(REQUESTS)}
        )
        metrics = await get_json(f"{url}/metrics")
    # With λ = 0 (no budget) half the prompts have a positive gain and would go expensive.
    after = arms[WARMUP:]
    realised = after.count("expensive") / len(after)
    # Band ±0.08 (measured: 0.3375). 240 Bernoulli(0.3) decisions alone have σ ≈ 0.03; λ is
    # re-solved on a window weighted with a 25-request half-life, which adds noise of the same
    # order; and the cost model's running mean of completion tokens drifts from its 256-token
    # prior to the fake's 3 during this run, so λ solved on older (dearer) costs lets slightly
    # more requests through. On 3,000 real MMLU prompts the same policy lands within ±1 point.
    assert abs(realised - TARGET) <= 0.08, realised
    budget = decided["budget"]
    assert budget["target"] == TARGET and budget["target_kind"] == "fraction_expensive"
    assert budget["lambda"] > 0 and budget["window"] >= 200 - 16
    assert abs(budget["realised"] - TARGET) <= 0.1  # over the whole run, warm-up included
    assert 'adaptive_budget_lambda{policy="budgeted"}' in metrics
    assert f'adaptive_budget_target{{policy="budgeted"}} {TARGET}' in metrics


async def test_budget_survives_redis_dying_mid_run(
    upstream_urls: tuple[str, str], redis_server: RedisServer
) -> None:
    config = budget_config(*upstream_urls, redis_url=redis_server.url)
    app = create_app(config, predictor=HashPredictor())
    async with (
        running(app) as url,
        AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
    ):
        before = [await arm_of(client, i) for i in range(100)]
        redis = aioredis.from_url(redis_server.url)
        try:
            keys = [k.decode() async for k in redis.scan_iter("*budget*window*")]
            shared = await redis.llen(keys[0]) if len(keys) == 1 else None
        finally:
            await redis.aclose()
        assert shared == 100  # the window lives in Redis: replicas share one budget
        # A second replica that has served nothing yet already decides with the shared λ.
        replica = create_app(config, predictor=HashPredictor())
        async with running(replica) as replica_url:
            fresh = await get_json(
                f"{replica_url}/v1/adaptive/decide",
                {"model": "budgeted", "messages": prompt(998)},
            )
        assert fresh["budget"]["shared"] is True and fresh["budget"]["window"] == 100
        assert fresh["budget"]["lambda"] > 0
        redis_server.kill()
        after = [await arm_of(client, i) for i in range(100, 200)]
        decided = await get_json(
            f"{url}/v1/adaptive/decide", {"model": "budgeted", "messages": prompt(999)}
        )
    assert set(before + after) <= {"cheap", "expensive"}
    assert "expensive" in after and "cheap" in after  # still deciding, not stuck on one arm
    assert decided["budget"]["shared"] is False and decided["budget"]["lambda"] > 0
