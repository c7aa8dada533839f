"""Thinking budgets through the litellm adapter: an effort arm on an Anthropic upstream.

The Anthropic API is a local aiohttp server speaking its ``/v1/messages`` shape; litellm (the
real one) translates; the client is the openai SDK against the real proxy.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from openai import AsyncOpenAI

from proxy.config.schema import Config
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from proxy.upstream.litellm_adapter import thinking_param
from tests.servers import running


def test_a_thinking_budget_becomes_the_providers_thinking_parameter() -> None:
    assert thinking_param(8000) == {"type": "enabled", "budget_tokens": 8000}
    assert thinking_param(0) == {"type": "disabled"}


async def test_effort_arms_send_anthropic_their_thinking_budgets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What ``adaptive-proxy serve`` sets before litellm is imported: no price-map download.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    seen: list[dict[str, Any]] = []

    async def messages(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.json_response(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-20250514",
                "content": [{"type": "text", "text": "hi"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 50},
            }
        )

    anthropic = web.Application()
    anthropic.router.add_post("/v1/messages", messages)
    async with running(anthropic) as anthropic_url:
        arm = {"upstream": "claude", "overrides": {"thinking_budget_tokens": 0}}
        config = Config.model_validate(
            {
                "server": {"reload": False},
                "upstreams": {
                    "claude": {
                        "provider": "anthropic",
                        "base_url": anthropic_url,
                        "model": "claude-sonnet-4-20250514",
                        "api_key_env": "ANTHROPIC_API_KEY",
                        "retries": 0,
                        "price_in_per_mtok_usd": 3.0,
                        "price_out_per_mtok_usd": 15.0,
                    }
                },
                "policies": {
                    "think": {
                        "type": "route",
                        "cheap": arm,
                        "expensive": {**arm, "overrides": {"thinking_budget_tokens": 4096}},
                        "threshold": 0.5,
                    }
                },
                "predictor": {"type": "hash"},
            }
        )
        predictor = HashPredictor({"hard": {"gain": 0.9}, "easy": {"gain": 0.0}})
        app = create_app(config, predictor=predictor, env={"ANTHROPIC_API_KEY": "sk-test"})
        async with (
            running(app) as url,
            AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
        ):
            for prompt in ("hard one", "easy one"):
                answer = await client.chat.completions.create(
                    model="think", messages=[{"role": "user", "content": prompt}], max_tokens=8192
                )
                assert answer.choices[0].message.content == "hi"
    assert [body.get("thinking") for body in seen] == [
        {"type": "enabled", "budget_tokens": 4096},
        {"type": "disabled"},
    ]
    assert not any("thinking_budget_tokens" in body for body in seen)
