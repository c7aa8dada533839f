"""``POST /v1/responses`` on the replay upstream, for the client tests, until the replay serves it.

Issue 19 item 5 gives the replay upstream a ``/v1/responses`` of its own; until then this adds
one to the test's replay app (:func:`serve_responses`), and once the replay has the route this
adds nothing, so the tests then run against the real one. The answers are the replay's recorded
ones (``ReplayStore.lookup``, the prompt found from ``input`` and ``instructions``), the usage its
token counts, in the Responses API's shape: a JSON ``response`` object, or its event stream
(``response.created`` … ``response.output_text.delta`` … ``response.completed``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import web

from proxy.wire.errors import InvalidRequestError
from proxy.wire.tokens import count_message_tokens, count_tokens
from replay.server import STORE_KEY

_WORDS_PER_DELTA = 4


def _content_text(content: Any) -> str:
    """A message item's text: a string, or its ``input_text`` / ``output_text`` parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    raise InvalidRequestError("each input message needs a 'content'", param="input")


def input_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat ``messages`` a Responses request stands for (``instructions`` as the system)."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise InvalidRequestError("'input' must be a string or a non-empty list", param="input")
    for item in items:
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            raise InvalidRequestError("only message items are replayed", param="input")
        role = "system" if item.get("role") == "developer" else str(item.get("role"))
        messages.append({"role": role, "content": _content_text(item.get("content"))})
    return messages


def _response(body: dict[str, Any], rid: str, mid: str, text: str | None, usage: Any) -> Any:
    done = text is not None
    message: dict[str, Any] = {
        "type": "message",
        "id": mid,
        "status": "completed" if done else "in_progress",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}] if done else [],
    }
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed" if done else "in_progress",
        "model": body["model"],
        "output": [message] if done else [],
        "usage": usage if done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": {"type": "text"}},
    }


def _deltas(text: str) -> list[str]:
    words = text.split(" ")
    return [
        " ".join(words[i : i + _WORDS_PER_DELTA])
        + (" " if i + _WORDS_PER_DELTA < len(words) else "")
        for i in range(0, len(words), _WORDS_PER_DELTA)
    ]


async def _responses(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise InvalidRequestError("'model' must be a string", param="model")
    messages = input_messages(body)
    answer = request.app[STORE_KEY].lookup(body["model"], messages)[0]
    loop = asyncio.get_running_loop()
    input_tokens = await loop.run_in_executor(None, count_message_tokens, messages)
    output_tokens = await loop.run_in_executor(None, count_tokens, answer.text)
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
    rid, mid = f"resp_replay{uuid.uuid4().hex}", f"msg_replay{uuid.uuid4().hex}"
    done = _response(body, rid, mid, answer.text, usage)
    if body.get("stream") is not True:
        return web.json_response(done)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    sequence = 0

    async def send(kind: str, **fields: Any) -> None:
        nonlocal sequence
        event = {"type": kind, "sequence_number": sequence, **fields}
        sequence += 1
        await response.write(f"event: {kind}\ndata: {json.dumps(event)}\n\n".encode())

    started = _response(body, rid, mid, None, None)
    item = {"item_id": mid, "output_index": 0, "content_index": 0}
    await send("response.created", response=started)
    await send("response.in_progress", response=started)
    await send(
        "response.output_item.added",
        output_index=0,
        item={**done["output"][0], "status": "in_progress", "content": []},
    )
    empty = {"type": "output_text", "text": "", "annotations": []}
    await send("response.content_part.added", **item, part=empty)
    for delta in _deltas(answer.text):
        await send("response.output_text.delta", **item, delta=delta, logprobs=[])
    await send("response.output_text.done", **item, text=answer.text, logprobs=[])
    await send("response.content_part.done", **item, part=done["output"][0]["content"][0])
    await send("response.output_item.done", output_index=0, item=done["output"][0])
    await send("response.completed", response=done)
    await response.write_eof()
    return response


def serve_responses(app: web.Application) -> web.Application:
    """Add ``POST /v1/responses`` to a replay app that does not serve it yet; return ``app``."""
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    if ("POST", "/v1/responses") not in served:
        app.router.add_post("/v1/responses", _responses)
    return app
