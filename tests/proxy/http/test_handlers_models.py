"""``GET /v1/models/{id}`` (``client.models.retrieve``) and Responses-shaped decide/allocate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from proxy.decide.prediction import HashPredictor
from tests.proxy.fake_upstream import PRIMARY_MODEL, Stack, proxy_stack


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    # Predictions hash the whole conversation: a prompt read differently decides differently.
    async with proxy_stack(predictor=HashPredictor()) as running:
        yield running


async def test_models_retrieve_finds_policies_and_upstream_models(stack: Stack) -> None:
    policy = await stack.client.models.retrieve("auto")
    assert (policy.id, policy.object, policy.owned_by) == ("auto", "model", "adaptive-proxy")
    assert policy.model_extra is not None and policy.model_extra["adaptive"] == {"type": "route"}
    upstream = await stack.client.models.retrieve(PRIMARY_MODEL)
    assert (upstream.id, upstream.owned_by) == (PRIMARY_MODEL, "upstream:primary")
    listed = {m.id async for m in stack.client.models.list()}
    assert {"auto", "safe", PRIMARY_MODEL, "primary"} <= listed
    with pytest.raises(openai.NotFoundError) as missing:
        await stack.client.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"
    assert missing.value.body is not None and "no-such-model" in str(missing.value.message)


async def _post(stack: Stack, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base_url}{path}", json=body) as resp,
    ):
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def test_decide_takes_responses_input_as_the_same_conversation(stack: Stack) -> None:
    chat = await _post(
        stack,
        "/v1/adaptive/decide",
        {
            "model": "auto",
            "messages": [
                {"role": "system", "content": "Be exact."},
                {"role": "user", "content": "What is 17 * 23?"},
            ],
        },
    )
    responses = await _post(
        stack,
        "/v1/adaptive/decide",
        {
            "model": "auto",
            "instructions": "Be exact.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "What is 17 * 23?"}]}
            ],
        },
    )
    for key in ("policy", "arm", "upstream", "predictions", "gain"):
        assert responses[key] == chat[key]
    assert responses["cache"] == "hit"  # one conversation, one cached decision


async def test_allocate_takes_responses_shaped_prompts(stack: Stack) -> None:
    prompts = [f"question {i}" for i in range(6)]
    chat = await _post(
        stack,
        "/v1/adaptive/allocate",
        {
            "model": "auto",
            "budget": 3,
            "requests": [{"messages": [{"role": "user", "content": p}]} for p in prompts],
        },
    )
    responses = await _post(
        stack,
        "/v1/adaptive/allocate",
        {"model": "auto", "budget": 3, "requests": [{"input": p} for p in prompts]},
    )
    assert responses["allocations"] == chat["allocations"]
    assert len({a["n"] for a in chat["allocations"]}) > 1  # the prompts do differ
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.base_url}/v1/adaptive/allocate",
            json={"model": "auto", "budget": 1, "requests": [{"input": [{"role": "robot"}]}]},
        ) as resp,
    ):
        error = (await resp.json())["error"]
    assert resp.status == 400 and error["param"] == "requests[0].input[0].role"
