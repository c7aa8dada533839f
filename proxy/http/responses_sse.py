"""The Responses event stream as the HTTP response: a chat stream re-cut, or an upstream's own.

:func:`chat_as_response_events` turns an executor's chat-completion
:class:`~proxy.execute.seam.EventStream` (route chunks as they arrive; best-of-k and cascades
once their answer is chosen) into Responses events. :func:`write_response_events` writes any
Responses event stream: ``: keep-alive`` comments while a ``warmup`` (best-of-k's sampling)
runs, a failure after the status line as an ``error`` event, and no ``[DONE]`` (the Responses
API has none).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from proxy.execute.seam import EventStream
from proxy.http.sse import write_events
from proxy.wire.responses_api import response_skeleton, response_usage
from proxy.wire.responses_events import ResponseEventBuilder, event_payload

# Given the final response and the assistant message it stands for, once the stream is done.
Finished = Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]
# The ``error`` event for an error object (``{"message", "type", "param", "code"}``).
ErrorEvent = Callable[[dict[str, Any]], bytes]


async def chat_as_response_events(
    stream: EventStream,
    data: dict[str, Any],
    response_id: str,
    builder: ResponseEventBuilder,
    decorate: Callable[[dict[str, Any]], dict[str, Any]],
    finished: Finished,
) -> AsyncGenerator[bytes, None]:
    """Responses events for a chat stream answering Responses request ``data``.

    ``decorate`` adds the decision (``adaptive``, ``metadata``) to a response object; it is
    called for ``response.created`` and again for the final response, whose cost is known.
    """
    try:
        async for event in _converted(stream, data, response_id, builder, decorate, finished):
            yield event
    finally:
        await stream.events.aclose()  # the upstream response closes with it


async def _converted(
    stream: EventStream,
    data: dict[str, Any],
    response_id: str,
    builder: ResponseEventBuilder,
    decorate: Callable[[dict[str, Any]], dict[str, Any]],
    finished: Finished,
) -> AsyncGenerator[bytes, None]:
    builder.response = decorate(response_skeleton(data, response_id, "in_progress"))
    for event in builder.start():
        yield event
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage: Any = None
    finish_reason = None
    answered_by: str | None = None
    async for chunk in stream.events:
        payload = event_payload(chunk)
        if payload is None:
            continue
        if isinstance(payload.get("model"), str):
            answered_by = payload["model"]
        if payload.get("usage"):
            usage = payload["usage"]
        for choice in payload.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # the Responses API has one answer; the proxy asked for one
            delta = choice.get("delta") or {}
            if delta.get("content"):
                text.append(delta["content"])
                for event in builder.text(delta["content"]):
                    yield event
            for call in delta.get("tool_calls") or ():
                index = int(call.get("index", 0))
                function = call.get("function") or {}
                seen = calls.setdefault(index, {"id": call.get("id"), "name": "", "arguments": ""})
                seen["name"] += function.get("name") or ""
                seen["arguments"] += function.get("arguments") or ""
                for event in builder.tool_call(
                    index,
                    call_id=call.get("id"),
                    name=function.get("name"),
                    arguments=function.get("arguments") or "",
                ):
                    yield event
            finish_reason = choice.get("finish_reason") or finish_reason
    final = response_skeleton(data, response_id, "completed")
    if answered_by is not None:
        final["model"] = answered_by  # the model that answered, as the JSON answer says
    if finish_reason == "length":
        final["status"] = "incomplete"
        final["incomplete_details"] = {"reason": "max_output_tokens"}
    if usage is None:
        usage = {
            "prompt_tokens": stream.outcome.prompt_tokens or 0,
            "completion_tokens": stream.outcome.completion_tokens or 0,
        }
    final["usage"] = response_usage(usage)
    final = decorate(final)
    for event in builder.finish(final):
        yield event
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for _, call in sorted(calls.items())
        ]
    await finished({**final, "output": builder.output}, message)


async def write_response_events(
    request: web.Request,
    events: AsyncIterator[bytes],
    *,
    headers: dict[str, str],
    error_event: ErrorEvent,
    source: str,
    warmup: Awaitable[Any] | None = None,
    keepalive_interval_s: float = 5.0,
) -> web.StreamResponse:
    """Send ``events`` as the SSE response; failures after the status line end it honestly."""
    return await write_events(
        request,
        events,
        headers=headers,
        source=source,
        error_event=lambda body: error_event(body["error"]),
        warmup=warmup,
        keepalive_interval_s=keepalive_interval_s,
        what="responses stream",
    )
