"""The upstream path end to end: the OpenAI SDK → the real proxy → a scripted fake upstream.

What reaches the upstream (fields forwarded untouched, ``model`` swapped) and what the client sees
when the upstream misbehaves (4xx passthrough, 429, auth failures hidden, 5xx retried, refused
connections, timeouts, fallback).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.proxy.fake_upstream import (
    BACKUP_MODEL,
    PRIMARY_MODEL,
    Hang,
    Reply,
    Stack,
    Stream,
    chunk,
    completion,
    proxy_stack,
)

USER: Any = [{"role": "user", "content": "What is 2 + 2?"}]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    }
]
TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'},
}
SECRET = "sk-fake-secret-0123456789"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with proxy_stack() as running:
        yield running


def server_error(status: int = 500) -> Reply:
    return Reply(status=status, body={"error": {"message": "boom", "type": "server_error"}})


async def test_unknown_fields_reach_upstream_unchanged_and_model_is_swapped(stack: Stack) -> None:
    extra: dict[str, Any] = {
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "add"}},
        "response_format": {"type": "json_object"},
        "seed": 1234,
        "logprobs": True,
        "top_logprobs": 2,
        "temperature": 0.25,
        "stop": ["\n\n", "END"],
        "user": "user-42",
    }
    stack.primary.script(Reply(body=completion(PRIMARY_MODEL, None, tool_calls=[TOOL_CALL])))
    answer = await stack.client.chat.completions.create(
        model="auto",
        messages=USER,
        extra_body={"future_field": {"nested": [1, "two"]}},
        **extra,
    )
    (seen,) = stack.primary.requests
    assert seen.body["model"] == PRIMARY_MODEL
    assert seen.body["messages"] == USER
    assert seen.body["future_field"] == {"nested": [1, "two"]}
    for key, value in extra.items():
        assert seen.body[key] == value, key
    assert "stream_options" not in seen.body
    # The client's own key is for the proxy; upstream credentials come from ``api_key_env``.
    assert "Authorization" not in seen.headers
    assert answer.model == PRIMARY_MODEL
    calls = answer.choices[0].message.tool_calls
    assert calls is not None
    assert [c.model_dump() for c in calls] == [TOOL_CALL]
    assert answer.choices[0].finish_reason == "stop"


async def test_multipart_content_is_forwarded_unchanged(stack: Stack) -> None:
    messages: Any = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe this image."},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    answer = await stack.client.chat.completions.create(model="auto", messages=messages)
    assert answer.choices[0].message.content == "hello"
    assert stack.primary.requests[0].body["messages"] == messages


async def test_streamed_tool_call_deltas_reach_client_unchanged(stack: Stack) -> None:
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "add", "arguments": ""},
    }
    rest = [{"index": 0, "function": {"arguments": part}} for part in ('{"a": 2,', ' "b": 2}')]
    stack.primary.script(
        Stream(
            (
                chunk(PRIMARY_MODEL, {"role": "assistant", "content": None, "tool_calls": [first]}),
                *(chunk(PRIMARY_MODEL, {"tool_calls": [delta]}) for delta in rest),
                chunk(PRIMARY_MODEL, {}, finish="tool_calls"),
            )
        )
    )
    stream = await stack.client.chat.completions.create(
        model="auto", messages=USER, tools=TOOLS, stream=True
    )
    deltas: list[dict[str, Any]] = []
    finish = None
    async for part in stream:
        for choice in part.choices:
            for call in choice.delta.tool_calls or []:
                deltas.append(call.model_dump(exclude_none=True))
            finish = choice.finish_reason or finish
    assert deltas == [first, *rest]
    assert finish == "tool_calls"
    assert stack.primary.requests[0].body["tools"] == TOOLS


async def test_upstream_400_reaches_client_with_its_message(stack: Stack) -> None:
    stack.primary.script(
        Reply(
            status=400,
            body={
                "error": {
                    "message": "tools[0].function.name is invalid",
                    "type": "invalid_request_error",
                    "param": "tools",
                }
            },
        )
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await stack.client.chat.completions.create(model="auto", messages=USER)
    assert "tools[0].function.name is invalid" in caught.value.message
    assert caught.value.param == "tools"
    assert len(stack.primary.requests) == 1  # a client error is not retried


async def test_upstream_404_passes_through(stack: Stack) -> None:
    stack.primary.script(Reply(status=404, body={"error": {"message": "no such deployment"}}))
    with pytest.raises(openai.NotFoundError) as caught:
        await stack.client.chat.completions.create(model="auto", messages=USER)
    assert "no such deployment" in caught.value.message


async def test_429_is_retried_then_passed_through_with_retry_after(stack: Stack) -> None:
    limited = {"error": {"message": "slow down", "type": "rate_limit_error"}}
    stack.primary.script(
        Reply(status=429, body=limited, headers={"Retry-After": "0"}),
        Reply(status=429, body=limited, headers={"Retry-After": "0"}),
        Reply(status=429, body=limited, headers={"Retry-After": "7"}),
    )
    # ``safe``'s fallback would hide the 429; a passthrough by upstream name has none.
    with pytest.raises(openai.RateLimitError) as caught:
        await stack.client.chat.completions.create(model="primary", messages=USER)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert "slow down" in caught.value.message
    assert len(stack.primary.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
async def test_upstream_auth_failure_is_502_without_upstream_body(
    stack: Stack, status: int
) -> None:
    stack.primary.script(
        Reply(
            status=status,
            body={"error": {"message": f"Incorrect API key provided: {SECRET}"}},
            headers={"X-Echo": SECRET},
        )
    )
    with pytest.raises(openai.APIStatusError) as caught:
        await stack.client.chat.completions.create(model="primary", messages=USER)
    assert caught.value.status_code == 502
    response = caught.value.response
    assert SECRET not in response.text
    assert all(SECRET not in value for value in response.headers.values())
    assert caught.value.code == "upstream_auth_failed"
    assert len(stack.primary.requests) == 1


async def test_upstream_500_is_retried_then_502(stack: Stack) -> None:
    stack.primary.script(server_error(), server_error(503), server_error())
    with pytest.raises(openai.InternalServerError) as caught:
        await stack.client.chat.completions.create(model="primary", messages=USER)
    assert caught.value.status_code == 502
    assert caught.value.type == "upstream_error"
    assert len(stack.primary.requests) == 3  # 1 + retries: 2


async def test_retry_after_500_succeeds(stack: Stack) -> None:
    stack.primary.script(server_error())
    answer = await stack.client.chat.completions.create(model="primary", messages=USER)
    assert answer.choices[0].message.content == "hello"
    assert len(stack.primary.requests) == 2


async def test_stream_retry_after_500_succeeds(stack: Stack) -> None:
    stack.primary.script(server_error(503))
    stream = await stack.client.chat.completions.create(model="primary", messages=USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello!"
    assert len(stack.primary.requests) == 2


@pytest.mark.parametrize(
    "body", [b"<html>gateway</html>", b'{"object": "chat.completion"}', b"[1, 2]"]
)
async def test_upstream_200_that_is_not_a_completion_is_502(stack: Stack, body: bytes) -> None:
    stack.primary.script(Reply(body=body))
    with pytest.raises(openai.InternalServerError) as caught:
        await stack.client.chat.completions.create(model="primary", messages=USER)
    assert caught.value.status_code == 502
    assert "primary" in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_connection_refused_is_502(stack: Stack, stream: bool) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await stack.client.chat.completions.create(model="dead", messages=USER, stream=stream)
    assert caught.value.status_code == 502
    assert "dead" in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_hanging_upstream_is_504_after_timeout(stack: Stack, stream: bool) -> None:
    stack.primary.script(Hang())
    with pytest.raises(openai.APIStatusError) as caught:
        await stack.client.chat.completions.create(model="slow", messages=USER, stream=stream)
    assert caught.value.status_code == 504
    assert caught.value.type == "timeout_error"
    assert stack.primary.requests[0].body["model"] == "fake-slow-model"


@pytest.mark.parametrize("model", ["auto", "safe"])
async def test_fallback_upstream_answers_when_primary_fails(stack: Stack, model: str) -> None:
    stack.primary.script(server_error(), server_error(), server_error())
    raw = await stack.client.chat.completions.with_raw_response.create(model=model, messages=USER)
    answer = raw.parse()
    assert answer.model == BACKUP_MODEL
    adaptive = (answer.model_extra or {})["adaptive"]
    assert adaptive["upstream"] == "primary"
    assert adaptive["fallback_upstream"] == "backup"
    assert len(stack.primary.requests) == 3
    assert stack.backup.requests[0].body["model"] == BACKUP_MODEL


async def test_streaming_fallback_before_first_byte(stack: Stack) -> None:
    stack.primary.script(server_error(), server_error(), server_error())
    stream = await stack.client.chat.completions.create(model="auto", messages=USER, stream=True)
    chunks = [part async for part in stream]
    assert {part.model for part in chunks} == {BACKUP_MODEL}
    adaptive = (chunks[0].model_extra or {})["adaptive"]
    assert adaptive["fallback_upstream"] == "backup"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello!"


async def test_client_error_does_not_fall_back(stack: Stack) -> None:
    stack.primary.script(Reply(status=400, body={"error": {"message": "bad"}}))
    with pytest.raises(openai.BadRequestError):
        await stack.client.chat.completions.create(model="safe", messages=USER)
    assert stack.backup.requests == []
