"""The Responses API (``POST /v1/responses``) on the wire, and its conversion to and from chat.

Policies run on chat completions (their executors sample, vote, judge and cascade over chat
choices), so a Responses request to a policy is converted to the chat-completions shape
(:func:`to_chat_body`) and the chat answer back to a Responses object
(:func:`response_from_chat`). The request model is permissive, as the chat one is: it checks
only what the proxy reads, and the forwarded request is always the client's own dict.

Conversion, request side: ``instructions`` becomes the first (``system``) message; ``input`` (a
string, or items: messages with string or part content, ``function_call`` and
``function_call_output`` items) becomes the messages that follow, in order; function ``tools``
and ``tool_choice`` take chat's nested ``function`` shape; ``text.format`` becomes
``response_format``; ``max_output_tokens`` becomes ``max_completion_tokens`` and
``reasoning.effort`` becomes ``reasoning_effort``. Built-in tools (web search, file search, …)
and item references have no chat equivalent: they are served only by an upstream that speaks
the Responses API natively (``responses_api: true``), else refused with a 400 naming them.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, ValidationError

from proxy.wire.errors import InvalidRequestError
from proxy.wire.protocol import invalid_from_validation

# Request fields copied to the chat request under the same name.
_SAME_NAME_FIELDS = (
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "service_tier",
    "store",
    "seed",
    "top_logprobs",
)
_ROLES = frozenset({"system", "developer", "user", "assistant"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
# The Responses API's own limits on ``metadata``.
METADATA_MAX_KEYS = 16
METADATA_MAX_VALUE_CHARS = 512
# The key of the response's ``metadata`` that carries the proxy's decision (a JSON string).
METADATA_KEY = "adaptive"


class ResponsesRequest(BaseModel):
    """The fields of ``POST /v1/responses`` the proxy reads; the rest ride along unchecked."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    stream: StrictBool | None = None
    store: StrictBool | None = None
    previous_response_id: str | None = None
    tools: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None


_adapter: TypeAdapter[ResponsesRequest] = TypeAdapter(ResponsesRequest)


def validate_responses_request(data: dict[str, Any]) -> ResponsesRequest:
    """Validate a Responses request (400 with ``param`` on the first problem)."""
    try:
        parsed = _adapter.validate_python(data)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None
    if parsed.input is None and parsed.instructions is None:
        raise InvalidRequestError("input: required (a string or a list of items)", param="input")
    return parsed


def is_responses_shaped(data: dict[str, Any]) -> bool:
    """Whether a request body carries Responses ``input``/``instructions`` instead of messages."""
    return "messages" not in data and ("input" in data or "instructions" in data)


def input_messages(data: dict[str, Any], *, strict: bool = True) -> list[dict[str, Any]]:
    """The chat messages of a Responses request's ``instructions`` and ``input``.

    ``strict=False`` drops what chat cannot carry (built-in tool items, item references)
    instead of refusing it: enough to decide on, not to send to a chat upstream.
    """
    messages: list[dict[str, Any]] = []
    instructions = data.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    raw = data.get("input")
    if isinstance(raw, str):
        messages.append({"role": "user", "content": raw})
        return messages
    if raw is None:
        return messages
    if not isinstance(raw, list):
        raise InvalidRequestError("input: must be a string or a list of items", param="input")
    for index, item in enumerate(raw):
        _append_item(messages, item, f"input[{index}]", strict)
    return messages


def _append_item(messages: list[dict[str, Any]], item: Any, at: str, strict: bool) -> None:
    if not isinstance(item, dict):
        raise InvalidRequestError(f"{at}: must be an object", param=at)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            raise InvalidRequestError(
                f"{at}.role: must be one of {', '.join(sorted(_ROLES))}", param=f"{at}.role"
            )
        content = _content(item.get("content"), f"{at}.content", strict)
        messages.append({"role": role, "content": content})
    elif kind == "function_call":
        call = {
            "id": str(item.get("call_id") or item.get("id") or ""),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
        }
        last = messages[-1] if messages else None
        # Parallel calls are consecutive items in Responses and one assistant turn in chat.
        if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
            last["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        messages.append(
            {
                "role": "tool",
                "tool_call_id": str(item.get("call_id") or ""),
                "content": output if isinstance(output, str) else orjson.dumps(output).decode(),
            }
        )
    elif kind == "reasoning" or not strict:
        return  # a model's own reasoning summary: not input to another model's chat turn
    else:
        raise InvalidRequestError(
            f"{at}.type: {kind!r} items need an upstream that serves the Responses API "
            "natively (responses_api: true); chat completions have no equivalent",
            param=f"{at}.type",
        )


def _content(content: Any, at: str, strict: bool) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{at}: must be a string or a list of parts", param=at)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "input_image" and isinstance(part, dict):
            image: dict[str, Any] = {"url": part.get("image_url") or part.get("file_id")}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file" and isinstance(part, dict):
            keys = ("file_id", "file_data", "filename")
            parts.append({"type": "file", "file": {k: part[k] for k in keys if k in part}})
        elif strict:
            raise InvalidRequestError(
                f"{at}[{index}].type: {kind!r} parts need an upstream that serves the "
                "Responses API natively (responses_api: true)",
                param=f"{at}[{index}].type",
            )
    # One text part is the same prompt as a string (and keys the decision cache the same).
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _chat_tools(tools: list[Any], strict: bool) -> list[dict[str, Any]]:
    out = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            if not strict:
                continue
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise InvalidRequestError(
                f"tools[{index}].type: the built-in tool {kind!r} needs an upstream that "
                "serves the Responses API natively (responses_api: true)",
                param=f"tools[{index}].type",
            )
        function = {k: v for k, v in tool.items() if k != "type"}
        out.append({"type": "function", "function": function})
    return out


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_schema":
        schema = {k: v for k, v in fmt.items() if k != "type"}
        return {"type": "json_schema", "json_schema": schema}
    return dict(fmt)


def to_chat_body(
    data: dict[str, Any],
    *,
    prior: list[dict[str, Any]] | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """The chat-completions request a Responses request stands for (``prior``: earlier turns).

    ``strict=False``: what chat cannot carry is dropped, not refused (see :func:`input_messages`).
    """
    messages = [*(prior or ()), *input_messages(data, strict=strict)]
    if not messages:
        raise InvalidRequestError("input: required (a string or a list of items)", param="input")
    body: dict[str, Any] = {"model": data["model"], "messages": messages}
    for key in _SAME_NAME_FIELDS:
        if data.get(key) is not None:
            body[key] = data[key]
    if data.get("stream") is True:
        body["stream"] = True
    if isinstance(data.get("max_output_tokens"), int):
        body["max_completion_tokens"] = data["max_output_tokens"]
    reasoning = data.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        body["reasoning_effort"] = reasoning["effort"]
    if data.get("tools"):
        body["tools"] = _chat_tools(data["tools"], strict)
    if data.get("tool_choice") is not None:
        body["tool_choice"] = _chat_tool_choice(data["tool_choice"])
    response_format = _response_format(data.get("text"))
    if response_format is not None:
        body["response_format"] = response_format
    return body


def new_id(prefix: str) -> str:
    """A fresh id in OpenAI's style (``resp_…``, ``msg_…``, ``fc_…``)."""
    return f"{prefix}_{secrets.token_hex(24)}"


def response_usage(usage: Any) -> dict[str, Any]:
    """Chat ``usage`` in the Responses shape (input/output tokens and their details)."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(cached)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": int(reasoning)},
        "total_tokens": prompt + completion,
    }


def output_items(message: dict[str, Any], *, finished: bool = True) -> list[dict[str, Any]]:
    """A chat choice's ``message`` as Responses output items (a message, then function calls)."""
    status = "completed" if finished else "incomplete"
    items: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and (text or not message.get("tool_calls")):
        items.append(message_item(new_id("msg"), text, status))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        items.append(
            {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call.get("id") or new_id("call"),
                "name": function.get("name") or "",
                "arguments": function.get("arguments") or "",
                "status": "completed",
            }
        )
    return items


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    """An assistant output message of one ``output_text`` part."""
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def response_skeleton(data: dict[str, Any], response_id: str, status: str) -> dict[str, Any]:
    """A Responses object for ``data`` with no output yet (echoing the request's settings)."""
    reasoning = data.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": data["model"],
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": data.get("instructions"),
        "max_output_tokens": data.get("max_output_tokens"),
        "metadata": dict(data.get("metadata") or {}),
        "parallel_tool_calls": data.get("parallel_tool_calls", True),
        "previous_response_id": data.get("previous_response_id"),
        "reasoning": {"effort": effort, "summary": None},
        "store": data.get("store", True),
        "temperature": data.get("temperature"),
        "text": data.get("text") or {"format": {"type": "text"}},
        "tool_choice": data.get("tool_choice", "auto"),
        "tools": data.get("tools") or [],
        "top_p": data.get("top_p"),
        "truncation": data.get("truncation", "disabled"),
        "usage": None,
        "user": data.get("user"),
    }


def response_from_chat(
    data: dict[str, Any], chat: dict[str, Any], response_id: str
) -> dict[str, Any]:
    """The Responses object of a chat completion answering Responses request ``data``."""
    out = response_skeleton(data, response_id, "completed")
    if isinstance(chat.get("model"), str):
        out["model"] = chat["model"]  # the model that answered, as a native upstream says
    choices = chat.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    finished = choice.get("finish_reason") != "length"
    out["output"] = output_items(choice.get("message") or {}, finished=finished)
    if not finished:
        out["status"] = "incomplete"
        out["incomplete_details"] = {"reason": "max_output_tokens"}
    out["usage"] = response_usage(chat.get("usage"))
    return out


# Decision fields kept in ``metadata.adaptive`` (a string of at most 512 characters).
_METADATA_FIELDS = (
    "policy",
    "arm",
    "upstream",
    "n",
    "cost_usd",
    "cache",
    "gain",
    "fallback_reason",
    "fallback_upstream",
    "reranker",
    "decision_ms",
)


def with_decision_metadata(
    metadata: dict[str, Any] | None, adaptive: dict[str, Any]
) -> dict[str, str]:
    """``metadata`` plus ``adaptive``: the decision as compact JSON, within the API's limits.

    The client's own keys are kept as they are; with 16 of them already there is no room, and
    the decision is then only in the ``x-adaptive-*`` headers and the top-level ``adaptive``.
    """
    out = {str(k): str(v) for k, v in (metadata or {}).items()}
    if METADATA_KEY not in out and len(out) >= METADATA_MAX_KEYS:
        return out
    compact = {k: adaptive[k] for k in _METADATA_FIELDS if adaptive.get(k) is not None}
    text = orjson.dumps(compact).decode()
    # Fields drop from the end (least needed first) until the JSON fits.
    while len(text) > METADATA_MAX_VALUE_CHARS and compact:
        compact.pop(next(reversed(compact)))
        text = orjson.dumps(compact).decode()
    out[METADATA_KEY] = text
    return out
