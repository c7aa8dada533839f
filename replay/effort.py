"""``python -m replay.effort [--port 8002]``: a SCRIPTED reasoning-model upstream (no model).

No recorded data of one model at several reasoning efforts ships with this project, so the
effort examples (``effort-ladder`` in ``config.example.yaml``, the README's "Reasoning effort")
run against this script instead: an OpenAI-compatible ``/v1/chat/completions`` whose answer is
the fixed text ``"scripted answer at reasoning effort <effort>"`` and whose ``usage`` reports
:data:`SCRIPTED_REASONING_TOKENS` reasoning tokens for that effort (inside
``completion_tokens``, as OpenAI counts them). The answers are not model outputs and say
nothing about quality; the script shows the wiring: which effort each arm sent, what the
reasoning tokens cost, how the proxy learns each arm's cost from them. Streaming is supported.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

#: Reasoning tokens the script reports per ``reasoning_effort`` (none given: no reasoning).
SCRIPTED_REASONING_TOKENS = {"none": 0, "minimal": 16, "low": 64, "medium": 256, "high": 1024}
_ANSWER_TOKENS = 8


def scripted_answer(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The scripted text and ``usage`` for one request (``ValueError``: an unknown effort)."""
    effort = body.get("reasoning_effort") or "none"
    if effort not in SCRIPTED_REASONING_TOKENS:
        raise ValueError(f"unsupported reasoning_effort {effort!r}")
    reasoning = SCRIPTED_REASONING_TOKENS[effort]
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": _ANSWER_TOKENS + reasoning,
        "total_tokens": prompt_tokens + _ANSWER_TOKENS + reasoning,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    return f"scripted answer at reasoning effort {effort}", usage


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return web.json_response(body, status=status)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: the scripted answer, as JSON or SSE."""
    try:
        body = await request.json()
        text, usage = scripted_answer(body)
    except (ValueError, KeyError, TypeError) as exc:
        return _error(400, str(exc))
    model = str(body.get("model") or "scripted-effort")
    base = {"id": "chatcmpl-scripted", "created": 0, "model": model}
    if not body.get("stream"):
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return web.json_response(
            {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    chunk = {**base, "object": "chat.completion.chunk"}
    deltas = [{"role": "assistant", "content": text}, {}]
    for i, delta in enumerate(deltas):
        choice = {"index": 0, "delta": delta, "finish_reason": "stop" if i else None}
        await response.write(f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n".encode())
    if (body.get("stream_options") or {}).get("include_usage"):
        await response.write(
            f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage})}\n\n".encode()
        )
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the one scripted model."""
    return web.json_response(
        {"object": "list", "data": [{"id": "scripted-effort", "object": "model", "created": 0}]}
    )


def create_effort_app() -> web.Application:
    """The scripted upstream as an aiohttp application."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the scripted upstream until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m replay.effort", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args(argv)
    print(f"SCRIPTED reasoning-effort upstream (fixed answers, no model) on :{args.port}")
    web.run_app(create_effort_app(), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
