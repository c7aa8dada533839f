"""Responses requests as chat requests, and chat answers as Responses objects."""

from __future__ import annotations

import json

import pytest

from proxy.wire.errors import InvalidRequestError
from proxy.wire.responses_api import (
    METADATA_MAX_KEYS,
    METADATA_MAX_VALUE_CHARS,
    response_from_chat,
    to_chat_body,
    with_decision_metadata,
)


def test_items_instructions_tools_and_format_become_their_chat_equivalents() -> None:
    chat = to_chat_body(
        {
            "model": "auto",
            "instructions": "Be exact.",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "get", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"type": "reasoning", "summary": []},
            ],
            "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {}, "strict": True}},
            "max_output_tokens": 50,
            "reasoning": {"effort": "low"},
            "store": False,
        }
    )
    assert chat["messages"] == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "get", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {}, "strict": True},
    }
    assert chat["max_completion_tokens"] == 50 and chat["reasoning_effort"] == "low"
    assert chat["store"] is False


def test_what_chat_cannot_carry_is_refused_or_dropped_for_deciding() -> None:
    data = {
        "model": "auto",
        "input": [{"type": "item_reference", "id": "x"}, {"role": "user", "content": "hi"}],
        "tools": [{"type": "web_search_preview"}],
    }
    with pytest.raises(InvalidRequestError) as refused:
        to_chat_body(data)
    assert refused.value.param == "input[0].type"
    lenient = to_chat_body(data, strict=False)
    assert lenient["messages"] == [{"role": "user", "content": "hi"}]


def test_a_chat_answer_becomes_output_items_and_usage() -> None:
    chat = {
        "model": "m",
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "Calling.",
                    "tool_calls": [
                        {"id": "c", "function": {"name": "get", "arguments": '{"a": 1}'}}
                    ],
                },
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    }
    out = response_from_chat({"model": "auto", "input": "x"}, chat, "resp_1")
    assert [item["type"] for item in out["output"]] == ["message", "function_call"]
    assert out["output"][0]["content"][0]["text"] == "Calling."
    assert out["output"][1]["call_id"] == "c" and out["output"][1]["arguments"] == '{"a": 1}'
    assert out["status"] == "incomplete"
    assert out["incomplete_details"] == {"reason": "max_output_tokens"}
    assert out["usage"]["input_tokens"] == 7 and out["usage"]["total_tokens"] == 10


def test_decision_metadata_keeps_within_the_api_limits() -> None:
    adaptive = {"policy": "p" * 400, "arm": "a" * 300, "upstream": "u", "n": 3}
    out = with_decision_metadata({"mine": "x"}, adaptive)
    assert out["mine"] == "x"
    assert len(out["adaptive"]) <= METADATA_MAX_VALUE_CHARS
    assert json.loads(out["adaptive"]) == {"policy": "p" * 400}
    full = {f"k{i}": "v" for i in range(METADATA_MAX_KEYS)}
    assert with_decision_metadata(full, adaptive) == full
