"""A cascade's passed-through last stage, event by event: the cheap stages' usage added to its
usage event, and the text its first choice adds (read for a learning policy's free label)."""

from __future__ import annotations

import orjson

from proxy.wire.protocol import sse_event


def first_choice_delta(event: bytes) -> list[str]:
    """The content a chunk event adds to choice 0 (``[]`` for any other event)."""
    try:
        payload = orjson.loads(event[6:]) if event.startswith(b"data: ") else None
    except orjson.JSONDecodeError:
        return []
    choices = payload.get("choices") if isinstance(payload, dict) else None
    out: list[str] = []
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                out.append(content)
    return out


def with_cheap_usage(event: bytes, prompt_tokens: int, completion_tokens: int) -> bytes:
    """The upstream's usage event with the cheap stages' tokens added (usage sums every stage)."""
    try:
        payload = orjson.loads(event[6:]) if event.startswith(b"data: ") else None
    except orjson.JSONDecodeError:
        return event
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or not isinstance(usage, dict):
        return event
    prompt = int(usage.get("prompt_tokens") or 0) + prompt_tokens
    completion = int(usage.get("completion_tokens") or 0) + completion_tokens
    payload["usage"] = {
        **usage,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return sse_event(payload)
