"""Function tools and ``text.format`` on ``POST /v1/responses`` through a chat-only upstream.

The scripted fake upstream answers chat completions with tool calls; the client (the openai
SDK's ``client.responses``) sees them as ``function_call`` output items and events.
"""

from __future__ import annotations

from typing import Any

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
