"""The ``x-adaptive-*`` headers say what happened: samples drawn, choices, fallbacks, errors."""

from __future__ import annotations

import openai
import pytest

from tests.proxy.fake_upstream import PRIMARY_MODEL, Reply, completion, proxy_stack


def three_choices() -> dict[str, object]:
    body = completion(PRIMARY_MODEL)
    body["choices"] = [dict(body["choices"][0], index=i) for i in range(3)]
    return body


async def test_a_clients_own_n_is_drawn_and_shown_as_choices() -> None:
    async with proxy_stack() as stack:
        stack.primary.script(Reply(body=three_choices()))
        raw = await stack.client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], n=3
        )
        adaptive = (raw.parse().model_extra or {})["adaptive"]
        assert raw.headers["x-adaptive-n"] == "3" and raw.headers["x-adaptive-choices"] == "3"
        assert adaptive["n"] == 3 and adaptive["choices"] == 3
        assert stack.primary.requests[0].body["n"] == 3
        # A threshold route still reports what its arm is expected to cost.
        assert adaptive["threshold"] == 0.5 and adaptive["expected_cost_usd"] > 0


async def test_a_fallback_shows_in_the_header_and_the_body() -> None:
    async with proxy_stack() as stack:
        stack.primary.script(*[Reply(status=500)] * 3)  # first try and both retries
        raw = await stack.client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-adaptive-fallback"] == "backup"
        assert (raw.parse().model_extra or {})["adaptive"]["fallback_upstream"] == "backup"
        stack.primary.script(*[Reply(status=500)] * 3)
        stream = await stack.client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert stream.headers["x-adaptive-fallback"] == "backup"
        chunks = [c async for c in stream.parse()]
        first = chunks[0]
        assert (first.model_extra or {})["adaptive"]["fallback_upstream"] == "backup"


async def test_error_responses_name_the_policy() -> None:
    async with proxy_stack() as stack:
        stack.primary.script(*[Reply(status=500)] * 3)
        stack.backup.script(Reply(status=500))
        with pytest.raises(openai.InternalServerError) as failed:
            await stack.client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "hi"}]
            )
        headers = failed.value.response.headers
        assert headers["x-adaptive-policy"] == "auto" and headers["x-adaptive-arm"] == "cheap"
        assert headers["x-request-id"]
