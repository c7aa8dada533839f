"""Function tools and ``text.format`` on ``POST /v1/responses`` through a chat-only upstream.

The scripted fake upstream answers chat completions with tool calls; the client (the openai
SDK's ``client.responses``) sees them as ``function_call`` output items and events.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.proxy.fake_upstream import (
    PRIMARY_MODEL,
    Reply,
    Stream,
    chunk,
    completion,
    proxy_stack,
    usage_chunk,
)

TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
CALL: Any = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": ""},
}


async def test_tool_calls_come_back_as_function_call_items() -> None:
    async with proxy_stack() as stack:
        stack.primary.script(
            Reply(
                body=completion(
                    PRIMARY_MODEL,
                    None,
                    tool_calls=[
                        {**CALL, "function": {**CALL["function"], "arguments": '{"city":"Oslo"}'}}
                    ],
                )
            )
        )
        response = await stack.client.responses.create(
            model="auto",
            input=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=TOOLS,
            text={"format": {"type": "json_object"}},
        )
        sent = stack.primary.requests[-1].body
    (call,) = response.output
    assert call.type == "function_call"
    assert (call.name, call.arguments, call.call_id) == ("get_weather", '{"city":"Oslo"}', "call_1")
    assert sent["tools"] == [
        {"type": "function", "function": {k: v for k, v in TOOLS[0].items() if k != "type"}}
    ]
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["messages"] == [{"role": "user", "content": "Weather in Oslo?"}]


async def test_streamed_tool_calls_are_function_call_events() -> None:
    start = {**CALL, "index": 0}
    pieces = ('{"city"', ':"Oslo"}')
    chunks = (
        chunk(PRIMARY_MODEL, {"role": "assistant", "content": None, "tool_calls": [start]}),
        *(
            chunk(PRIMARY_MODEL, {"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
            for p in pieces
        ),
        chunk(PRIMARY_MODEL, {}, finish="tool_calls"),
        usage_chunk(PRIMARY_MODEL),
    )
    async with proxy_stack() as stack:
        stack.primary.script(Stream(chunks))
        stream = await stack.client.responses.create(
            model="auto", input="Weather in Oslo?", tools=TOOLS, stream=True
        )
        events: list[Any] = [event async for event in stream]
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert deltas == list(pieces)
    final = events[-1].response
    (call,) = final.output
    assert (call.type, call.name, call.arguments) == (
        "function_call",
        "get_weather",
        "".join(pieces),
    )
    assert final.usage.input_tokens == 7 and final.usage.output_tokens == 3


async def test_a_stored_response_is_retrieved_from_the_upstream_that_made_it() -> None:
    # The route's cheap upstream fails, so its fallback creates the response; the default
    # upstream (primary) never saw it, and retrieving it by id must not go there.
    created = {"id": "resp_on_backup", "object": "response", "usage": {"input_tokens": 2}}
    async with proxy_stack(upstream_extra={"responses_api": True}) as stack:
        stack.primary.script(*(Reply(status=503, body={"error": {"message": "busy"}}),) * 3)
        stack.backup.script(Reply(body=created), Reply(body={**created, "status": "completed"}))
        async with aiohttp.ClientSession() as http:
            body = {"model": "auto", "input": "hi"}
            async with http.post(f"{stack.base_url}/v1/responses", json=body) as resp:
                assert resp.status == 200 and resp.headers["x-adaptive-fallback"] == "backup"
                assert (await resp.json())["id"] == "resp_on_backup"
            async with http.get(f"{stack.base_url}/v1/responses/resp_on_backup") as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "completed"
            async with http.get(f"{stack.base_url}/v1/responses/resp_other") as resp:
                assert resp.status == 200  # unknown ids: the default upstream's to answer
    assert [r.path_qs for r in stack.backup.raw] == [
        "/v1/responses",
        "/v1/responses/resp_on_backup",
    ]
    assert [r.path_qs for r in stack.primary.raw][-1] == "/v1/responses/resp_other"
