"""``POST /v1/responses`` on the replay upstream: the recorded answers, in the Responses shape.

The request (``input`` as a string or items, ``instructions``) is read as the chat messages it
stands for (:func:`proxy.wire.responses_api.to_chat_body`) and answered with the same recorded
answer chat completions get, as a Responses object or as the Responses event stream
(``stream: true``). A stored response (``store`` not false) can be continued with
``previous_response_id``: its conversation comes first, so an MT-Bench turn 2 gets its recorded
turn-2 answer; an unknown id is a 404 ``previous_response_not_found``, as OpenAI answers. A
``reasoning.effort`` is served only as recorded (:func:`replay.app_state.check_effort`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from proxy.wire.errors import InvalidRequestError, ProxyError
from proxy.wire.responses_api import (
    new_id,
    response_from_chat,
    response_skeleton,
    to_chat_body,
    validate_responses_request,
)
from proxy.wire.responses_events import ResponseEventBuilder
from proxy.wire.tokens import count_message_tokens, count_tokens
from replay.app_state import (
    CONVERSATIONS_KEY,
    LATENCY_KEY,
    check_effort,
    lookup_answers,
    split_chunks,
)


class PreviousResponseNotFoundError(ProxyError):
    """``previous_response_id`` names no response this upstream stored (404)."""

    status = 404
    error_type = "invalid_request_error"
    default_code = "previous_response_not_found"


def _counts(messages: list[dict[str, Any]], text: str) -> tuple[int, int]:
    return count_message_tokens(messages), count_tokens(text)


async def create_response(request: web.Request) -> web.StreamResponse:
    """Answer a Responses request with the recorded answer of its model."""
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    parsed = validate_responses_request(body)
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    check_effort(parsed.model, effort, param="reasoning.effort")
    conversations = request.app[CONVERSATIONS_KEY]
    prior: list[dict[str, Any]] = []
    if parsed.previous_response_id is not None:
        found = conversations.get(parsed.previous_response_id)
        if found is None:
            raise PreviousResponseNotFoundError(
                f"Previous response with id '{parsed.previous_response_id}' not found.",
                param="previous_response_id",
            )
        prior = found
    messages = to_chat_body(body, prior=prior)["messages"]
    seed = body.get("seed") if isinstance(body.get("seed"), int) else None
    (answer,) = lookup_answers(request.app, parsed.model, messages, n=1, seed=seed)
    loop = asyncio.get_running_loop()
    prompt_tokens, completion_tokens = await loop.run_in_executor(
        None, _counts, messages, answer.text
    )
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    chat = {
        "choices": [
            {"message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }
    response_id = new_id("resp")
    response = response_from_chat(body, chat, response_id)
    response["replay"] = {"prompt_id": answer.prompt_id, "arm": answer.arm, "arms": [answer.arm]}
    if parsed.store is not False:
        conversations.put(response_id, [*messages, {"role": "assistant", "content": answer.text}])
    latency = request.app[LATENCY_KEY]
    if not parsed.stream:
        delay_s = latency.delay_s(completion_tokens, first=True)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        return web.json_response(response)
    return await _stream(request, body, response, answer.text)


async def _stream(
    request: web.Request, body: dict[str, Any], response: dict[str, Any], text: str
) -> web.StreamResponse:
    latency = request.app[LATENCY_KEY]
    stream = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await stream.prepare(request)
    skeleton = response_skeleton(body, response["id"], "in_progress")
    skeleton["created_at"] = response["created_at"]
    builder = ResponseEventBuilder(skeleton)
    for event in builder.start():
        await stream.write(event)
    first = True
    for piece in split_chunks(text):
        tokens = count_tokens(piece) if latency.per_token_ms > 0 else 0
        delay_s = latency.delay_s(tokens, first=first)
        first = False
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        for event in builder.text(piece):
            await stream.write(event)
    final = {k: v for k, v in response.items() if k != "output"}
    for event in builder.finish(final):
        await stream.write(event)
    await stream.write_eof()
    return stream
