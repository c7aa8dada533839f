"""Upstream answers the proxy must not forward: malformed stream events, oversized bodies.

The scripted fake upstream sends them through the real proxy; the client sees an honest error
(an SSE error event then ``[DONE]``, or a 502) and ``/metrics`` counts each refusal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.proxy.fake_upstream import (
    PRIMARY_MODEL,
    Reply,
    Stack,
    Stream,
    chunk,
    completion,
    proxy_stack,
)

USER: Any = [{"role": "user", "content": "Name three primes."}]
MAX_RESPONSE_BYTES = 64 * 1024
HTML = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with proxy_stack(upstream_extra={"max_response_bytes": MAX_RESPONSE_BYTES}) as running:
        yield running


async def stream(stack: Stack) -> list[bytes]:
    body = {"model": "auto", "messages": USER, "stream": True}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base_url}/v1/chat/completions", json=body) as resp,
    ):
        assert resp.status == 200
        raw = await resp.read()
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert all(e.startswith(b"data: ") for e in events), events
    return [e[len(b"data: ") :] for e in events]


async def bad_responses(stack: Stack, reason: str) -> float:
    """Refused upstream answers for ``reason``, summed over upstreams."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{stack.base_url}/metrics") as resp,
    ):
        text = await resp.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("adaptive_upstream_bad_responses_total{") and reason in line
    )


@pytest.mark.parametrize(
    "garbage",
    [
        b"data: {not json}\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"choices": [\n\n',
        HTML,
    ],
)
async def test_garbage_in_a_stream_ends_it_with_an_error_event(
    stack: Stack, garbage: bytes
) -> None:
    stack.primary.script(Stream((chunk(PRIMARY_MODEL, {"content": "a"}), garbage)))
    events = await stream(stack)
    assert events[-1] == b"[DONE]"
    assert garbage.strip() not in b"".join(events)
    error = orjson.loads(events[-2])["error"]
    assert error["code"] == "upstream_malformed_stream"
    assert await bad_responses(stack, "malformed_stream") == 1


async def test_html_sent_as_event_stream_is_an_error_event(stack: Stack) -> None:
    stack.primary.script(Stream((HTML,)))
    events = await stream(stack)
    assert [orjson.loads(e)["error"]["code"] for e in events[:-1]] == ["upstream_malformed_stream"]
    assert events[-1] == b"[DONE]"


async def test_oversized_answers_are_refused(stack: Stack) -> None:
    big = completion(PRIMARY_MODEL, "x" * (MAX_RESPONSE_BYTES + 1))
    stack.primary.script(Reply(body=big))
    stack.backup.script(Reply(body=big))  # ``safe`` falls back to it
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.base_url}/v1/chat/completions", json={"model": "safe", "messages": USER}
        ) as resp,
    ):
        error = (await resp.json())["error"]
    assert resp.status == 502
    assert error["code"] == "upstream_response_too_large"
    assert "max_response_bytes" in error["message"]
    many = tuple(chunk(PRIMARY_MODEL, {"content": "y" * 1000}) for _ in range(100))
    stack.primary.script(Stream(many))
    events = await stream(stack)
    assert orjson.loads(events[-2])["error"]["code"] == "upstream_response_too_large"
    assert len(b"".join(events)) < 2 * MAX_RESPONSE_BYTES
    assert await bad_responses(stack, "too_large") == 3
