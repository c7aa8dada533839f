"""The request fields the proxy reads or acts on get OpenAI's types and ranges, end to end.

A wrong type is a 400 naming the field the client wrote, and never reaches the upstream (it
used to: ``n: "3"`` came back as the upstream's 400, ``stream: "yes"`` streamed). Every other
field still passes through untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.proxy.fake_upstream import Stack, proxy_stack

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with proxy_stack() as running:
        yield running


async def post(stack: Stack, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base_url}{path}", json=body) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


REJECTED: list[tuple[dict[str, Any], str]] = [
    ({"n": "3"}, "n"),
    ({"n": 3.0}, "n"),
    ({"n": True}, "n"),
    ({"n": 0}, "n"),
    ({"n": 129}, "n"),
    ({"stream": "yes"}, "stream"),
    ({"stream": 1}, "stream"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_p": "0.9"}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "100"}, "max_tokens"),
    ({"max_tokens": 1.5}, "max_tokens"),
    ({"max_tokens": False}, "max_tokens"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"max_completion_tokens": 2.0}, "max_completion_tokens"),
    ({"seed": 1.5}, "seed"),
    ({"seed": "7"}, "seed"),
    ({"seed": True}, "seed"),
    ({"stream_options": "yes"}, "stream_options"),
    ({"stream_options": []}, "stream_options"),
    ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": {"text": "hi"}}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}, "messages[0].content[0].type"),
    ({"messages": [*USER, {"role": 3, "content": "x"}]}, "messages[1].role"),
]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/adaptive/decide"])
@pytest.mark.parametrize(("fields", "param"), REJECTED)
async def test_a_wrong_type_or_range_is_a_400_naming_the_field(
    stack: Stack, path: str, fields: dict[str, Any], param: str
) -> None:
    status, body = await post(stack, path, {"model": "auto", "messages": USER, **fields})
    error = body["error"]
    assert (status, error["type"], error["param"]) == (400, "invalid_request_error", param)
    assert error["message"].startswith(f"{param}: ")
    assert stack.primary.requests == []  # refused by the proxy, not by the upstream


async def test_the_sdk_raises_bad_request_with_the_param(stack: Stack) -> None:
    for extra, param in (({"n": "3"}, "n"), ({"temperature": "hot"}, "temperature")):
        with pytest.raises(openai.BadRequestError) as caught:
            await stack.client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "hi"}], extra_body=extra
            )
        assert caught.value.param == param and "not a string" in caught.value.message
    integer_content: Any = [{"role": "user", "content": 5}]  # not what the SDK's types allow
    with pytest.raises(openai.BadRequestError) as content:
        await stack.client.chat.completions.create(model="auto", messages=integer_content)
    assert content.value.param == "messages[0].content"
    assert content.value.message.endswith("or null, not an integer")
    assert stack.primary.requests == []


ACCEPTED: list[dict[str, Any]] = [
    {"n": None, "temperature": None, "top_p": None, "seed": None, "max_tokens": None},
    {"temperature": 0, "top_p": 1, "max_tokens": 1, "max_completion_tokens": 1, "seed": -1},
    {"temperature": 2, "top_p": 0.0, "seed": 2**62},
    {"stream": False, "stream_options": None},
    {"stream": None},
    {"some_future_field": {"nested": [1, "x"]}, "metadata": {"k": "v"}},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "extra": 1}]}]},
    {"messages": [*USER, {"role": "assistant", "content": None, "tool_calls": []}]},
]


@pytest.mark.parametrize("fields", ACCEPTED)
async def test_valid_values_and_unknown_fields_reach_the_upstream_unchanged(
    stack: Stack, fields: dict[str, Any]
) -> None:
    body = {"model": "auto", "messages": USER, **fields}
    status, answer = await post(stack, "/v1/chat/completions", body)
    assert status == 200, answer
    (received,) = stack.primary.requests
    # The upstream's model id replaces the policy's name; a JSON answer is asked for as such
    # (stream_options belong to streams).
    forwarded = {k: v for k, v in body.items() if k != "stream_options"}
    assert received.body == {**forwarded, "model": received.body["model"], "stream": False}


async def test_a_stream_with_options_streams_and_honours_include_usage(stack: Stack) -> None:
    stream = await stack.client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 10
