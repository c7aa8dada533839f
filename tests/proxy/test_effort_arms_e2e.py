"""Reasoning-effort arms end to end: one model at two efforts as route, ladder and cascade arms.

The upstream is the scripted :class:`tests.proxy.fake_upstream.FakeUpstream`, which answers by
``reasoning_effort`` and reports reasoning tokens (no recorded effort data exists to replay);
the client is the official openai SDK.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from openai import AsyncOpenAI

from proxy.config.schema import Config
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from proxy.wire.tokens import count_message_tokens_async
from tests.proxy.fake_upstream import (
    REASONING_TOKENS,
    VISIBLE_TOKENS,
    FakeUpstream,
    Reply,
    completion,
)
from tests.redis_server import RedisServer
from tests.servers import running

PRICE_IN, PRICE_OUT = 1.0, 10.0  # USD per million tokens
LOW = {"reasoning_effort": "low"}
HIGH = {"reasoning_effort": "high"}

# Steered predictions: a prompt containing the key gets these outputs.
PREDICTIONS = {
    "think-hard": {"gain": 0.9, "r_quick": 0.5, "r_deep": 0.95},
    "easy": {"gain": 0.1, "r_quick": 0.9, "r_deep": 0.5},
    # Deep is a little better: worth it while both arms look equally costly, not once the
    # realised reasoning tokens show what deep costs.
    "close-call": {"gain": 0.1, "r_quick": 0.5, "r_deep": 0.52},
}


def effort_config(url: str, redis_url: str | None = None) -> Config:
    """One upstream ``o-model``; route, ladder and cascade policies over two of its efforts."""
    route = {
        "type": "route",
        "cheap": {"upstream": "o-model", "overrides": LOW},
        "expensive": {"upstream": "o-model", "overrides": HIGH},
        "threshold": 0.5,
    }
    arms = [
        {"name": "quick", "upstream": "o-model", "predictor_output": "r_quick", "overrides": LOW},
        {"name": "deep", "upstream": "o-model", "predictor_output": "r_deep", "overrides": HIGH},
    ]
    return Config.model_validate(
        {
            "server": {"reload": False},
            "upstreams": {
                "o-model": {
                    "base_url": url,
                    "model": "o-fake",
                    "retries": 0,
                    "price_in_per_mtok_usd": PRICE_IN,
                    "price_out_per_mtok_usd": PRICE_OUT,
                }
            },
            "policies": {
                "effort-route": route,
                "effort-route-forced": {**route, "override_client": True},
                "effort-ladder": {"type": "ladder", "lambda": 10.0, "arms": arms},
                "effort-cascade": {
                    "type": "cascade",
                    "stages": [
                        {"name": "quick", "upstream": "o-model", "n": 2, "overrides": LOW},
                        {"name": "deep", "upstream": "o-model", "overrides": HIGH},
                    ],
                    "escalate": {"threshold": 0.5},
                    # The fake's answers end in the effort: two quick answers agree.
                    "answer_pattern": r"effort (\w+)",
                },
            },
            "predictor": {"type": "hash"},
            "cache": {"redis_url": redis_url} if redis_url else {},
        }
    )


@dataclass
class EffortStack:
    upstream: FakeUpstream
    client: AsyncOpenAI


@asynccontextmanager
async def effort_stack(
    upstream: FakeUpstream | None = None, redis_url: str | None = None
) -> AsyncIterator[EffortStack]:
    """The proxy over one fake reasoning model, and an SDK client pointed at it."""
    fake = upstream or FakeUpstream()
    try:
        url = fake.base_url or await fake.start()
        app = create_app(effort_config(url, redis_url), predictor=HashPredictor(PREDICTIONS))
        async with (
            running(app) as proxy_url,
            AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0) as client,
        ):
            yield EffortStack(fake, client)
    finally:
        if upstream is None:
            await fake.close()


def answer_cost_usd(prompt_tokens: int, effort: str) -> float:
    return (
        prompt_tokens * PRICE_IN + (VISIBLE_TOKENS + REASONING_TOKENS[effort]) * PRICE_OUT
    ) / 1e6


def adaptive_of(response: Any) -> dict[str, Any]:
    extra: dict[str, Any] = response.model_extra or {}
    return dict(extra["adaptive"])


async def ask(client: AsyncOpenAI, model: str, prompt: str, **params: Any) -> tuple[Any, Any]:
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], **params
    )
    return raw.headers, raw.parse()


async def test_a_route_between_two_efforts_of_one_model() -> None:
    async with effort_stack() as stack:
        hard_headers, hard = await ask(stack.client, "effort-route", "think-hard: prove it")
        easy_headers, easy = await ask(stack.client, "effort-route", "easy: say hi")
    assert hard_headers["x-adaptive-arm"] == "expensive"
    assert hard.choices[0].message.content == "thought at effort high"
    assert easy_headers["x-adaptive-arm"] == "cheap"
    assert easy.choices[0].message.content == "thought at effort low"
    assert [r.body.get("reasoning_effort") for r in stack.upstream.requests] == ["high", "low"]
    assert {r.body["model"] for r in stack.upstream.requests} == {"o-fake"}
    # Reasoning tokens reach the client and are paid for.
    assert hard.usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS["high"]
    adaptive = adaptive_of(hard)
    assert adaptive["overrides"] == HIGH
    assert adaptive["reasoning_tokens"] == REASONING_TOKENS["high"]
    assert adaptive["cost_usd"] == pytest.approx(answer_cost_usd(7, "high"))
    assert adaptive_of(easy)["cost_usd"] == pytest.approx(answer_cost_usd(7, "low"))


async def test_a_cached_decision_keeps_its_arms_effort() -> None:
    async with effort_stack() as stack:
        await ask(stack.client, "effort-route", "think-hard: again")
        headers, again = await ask(stack.client, "effort-route", "think-hard: again")
    assert headers["x-adaptive-cache"] == "hit"
    assert again.choices[0].message.content == "thought at effort high"
    assert [r.body["reasoning_effort"] for r in stack.upstream.requests] == ["high", "high"]


async def test_a_streamed_effort_arm_passes_reasoning_usage_through() -> None:
    async with effort_stack() as stack:
        stream = await stack.client.chat.completions.create(
            model="effort-route",
            messages=[{"role": "user", "content": "think-hard: stream it"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "thought at effort high"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS["high"]
    assert stack.upstream.requests[0].body["reasoning_effort"] == "high"


async def test_a_clients_own_reasoning_effort_is_respected_unless_overridden() -> None:
    async with effort_stack() as stack:
        _, kept = await ask(
            stack.client, "effort-route", "think-hard: a", reasoning_effort="medium"
        )
        _, forced = await ask(
            stack.client, "effort-route-forced", "think-hard: b", reasoning_effort="medium"
        )
        await ask(stack.client, "effort-route-forced", "think-hard: c", max_tokens=50)
    assert kept.choices[0].message.content == "thought at effort medium"
    assert forced.choices[0].message.content == "thought at effort high"
    sent = [r.body for r in stack.upstream.requests]
    assert [b["reasoning_effort"] for b in sent] == ["medium", "high", "high"]
    # Overrides set only what they name: the client's other parameters go through.
    assert sent[2]["max_tokens"] == 50


async def test_a_ladder_learns_what_each_effort_costs_from_its_answers() -> None:
    async with effort_stack() as stack:
        first_headers, first = await ask(stack.client, "effort-ladder", "close-call: one")
        easy_headers, _ = await ask(stack.client, "effort-ladder", "easy: two")
        later_headers, later = await ask(stack.client, "effort-ladder", "close-call: three")
    # Before any answer both efforts cost the same, so the better arm wins ...
    assert first_headers["x-adaptive-arm"] == "deep"
    assert easy_headers["x-adaptive-arm"] == "quick"
    # ... once the realised reasoning tokens are known, deep no longer pays for 0.02 reward.
    assert later_headers["x-adaptive-arm"] == "quick"
    assert later.choices[0].message.content == "thought at effort low"
    # Priced from the prompt (counted by the proxy) and quick's realised 3 + 20 tokens.
    prompt_tokens = await count_message_tokens_async(
        [{"role": "user", "content": "close-call: three"}]
    )
    assert adaptive_of(later)["expected_cost_usd"] == pytest.approx(
        answer_cost_usd(prompt_tokens, "low")
    )
    assert adaptive_of(first)["expected_cost_usd"] < answer_cost_usd(prompt_tokens, "high")
    assert [r.body["reasoning_effort"] for r in stack.upstream.requests] == ["high", "low", "low"]


async def test_a_ladder_shares_learned_effort_costs_through_redis(
    redis_server: RedisServer,
) -> None:
    upstream = FakeUpstream()
    await upstream.start()
    try:
        async with effort_stack(upstream, redis_server.url) as first_replica:
            assert (await ask(first_replica.client, "effort-ladder", "close-call: 1"))[0][
                "x-adaptive-arm"
            ] == "deep"
            await ask(first_replica.client, "effort-ladder", "easy: 2")
        # A replica started afterwards prices the efforts from the first one's answers.
        async with effort_stack(upstream, redis_server.url) as second_replica:
            headers, _ = await ask(second_replica.client, "effort-ladder", "close-call: 3")
    finally:
        await upstream.close()
    assert headers["x-adaptive-arm"] == "quick"


async def test_a_cascade_escalates_from_low_to_high_effort() -> None:
    async with effort_stack() as stack:
        # The two quick answers agree: the cascade answers at the quick effort.
        agreed_headers, agreed = await ask(stack.client, "effort-cascade", "easy: add")
        # Two quick answers that disagree: the deep stage answers.
        stack.upstream.script(
            Reply(body=completion("o-fake", "guess at effort one")),
            Reply(body=completion("o-fake", "guess at effort two")),
        )
        escalated_headers, escalated = await ask(stack.client, "effort-cascade", "easy: sub")
    assert agreed_headers["x-adaptive-arm"] == "quick"
    assert agreed.choices[0].message.content == "thought at effort low"
    assert escalated_headers["x-adaptive-arm"] == "deep"
    assert escalated.choices[0].message.content == "thought at effort high"
    efforts = [r.body["reasoning_effort"] for r in stack.upstream.requests]
    assert efforts == ["low", "low", "low", "low", "high"]
    stages = {s["stage"]: s for s in adaptive_of(escalated)["stages"]}
    assert set(stages) == {"quick", "deep"}
