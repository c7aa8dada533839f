"""A completion the proxy assembled (best-of-k's winner, a cascade's cheap answer) as a reply.

Best-of-k cannot stream before its winner is chosen: :func:`assembled_stream` is the SSE
execution whose warm-up is the sampling (keep-alives meanwhile), then the completion re-cut as
``chat.completion.chunk`` objects by :func:`completion_chunks`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from proxy.execute.seam import EventStream, ExecutionRequest, Outcome
from proxy.policies.base import BasePolicy
from proxy.wire.protocol import sse_event

_STREAM_PIECE_CHARS = 48


def message_content(choice: dict[str, Any]) -> str:
    """The text of a completion choice (``""`` when it has none, e.g. only tool calls)."""
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def assembled_stream(
    job: ExecutionRequest[BasePolicy | None],
    work: asyncio.Future[tuple[dict[str, Any], int]],
    *,
    headers: dict[str, str],
    source: str,
) -> EventStream:
    """A completion the proxy assembles (``work`` gives it and the samples drawn) as SSE
    chunks: the SSE writer sends keep-alives while ``work`` runs, then the chunks follow."""
    outcome = Outcome()

    async def events() -> AsyncGenerator[bytes, None]:
        try:
            body, n_samples = await work
            outcome.take(Outcome.of_completion(body, n_samples))
            for chunk in completion_chunks(body, job.include_usage):
                yield sse_event(chunk)
        finally:
            work.cancel()  # a no-op once it finished

    def adaptive() -> dict[str, Any]:
        adaptive_object: dict[str, Any] = work.result()[0]["adaptive"]
        return adaptive_object

    return EventStream(
        events=events(),
        adaptive=adaptive,
        headers=headers,
        outcome=outcome,
        warmup=work,
        keepalive_interval_s=job.keepalive_interval_s,
        source=source,
    )


def completion_chunks(body: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A complete chat completion re-cut as ``chat.completion.chunk`` objects (usage last)."""
    base = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
    }
    out: list[dict[str, Any]] = []
    for choice in body["choices"]:
        message = choice.get("message") or {}
        index = choice["index"]
        first: dict[str, Any] = {"role": "assistant", "content": ""}
        if message.get("tool_calls"):
            first["tool_calls"] = [
                dict(call, index=i) for i, call in enumerate(message["tool_calls"])
            ]
        out.append({**base, "choices": [{"index": index, "delta": first, "finish_reason": None}]})
        text = message_content(choice)
        for start in range(0, len(text), _STREAM_PIECE_CHARS):
            piece = text[start : start + _STREAM_PIECE_CHARS]
            out.append(
                {
                    **base,
                    "choices": [
                        {"index": index, "delta": {"content": piece}, "finish_reason": None}
                    ],
                }
            )
        out.append(
            {
                **base,
                "choices": [
                    {
                        "index": index,
                        "delta": {},
                        "finish_reason": choice.get("finish_reason", "stop"),
                    }
                ],
            }
        )
    if include_usage:
        out.append({**base, "choices": [], "usage": body["usage"]})
    return out
