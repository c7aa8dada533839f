"""Streaming, disconnects, request limits and the operational endpoints, end to end.

The OpenAI SDK (or raw aiohttp, to see the SSE bytes) talks to the real proxy in front of a
scripted fake upstream; the tests assert what a client observes and what the upstream received.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.proxy.fake_upstream import (
    PRIMARY_MODEL,
    Hang,
    Reply,
    Stack,
    Stream,
    chunk,
    proxy_stack,
    text_chunks,
)

USER: Any = [{"role": "user", "content": "Name three primes."}]
WIZARD: Any = {"role": "wizard", "content": "hi"}
MAX_BODY_BYTES = 8192
# Generous: cancellation takes milliseconds; the bound only keeps a broken proxy from hanging.
CANCEL_WAIT_S = 5.0


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with proxy_stack(max_body_bytes=MAX_BODY_BYTES) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def sse_events(
    http: aiohttp.ClientSession, stack: Stack, body: dict[str, Any]
) -> tuple[int, str, list[bytes]]:
    """Status, content type and the raw ``data:`` payloads of one streaming request."""
    async with http.post(f"{stack.base_url}/v1/chat/completions", json=body) as resp:
        raw = await resp.read()
        content_type = resp.content_type
    events = [e for e in raw.split(b"\n\n") if e.strip()]
    assert all(e.startswith(b"data: ") for e in events), events
    return resp.status, content_type, [e[len(b"data: ") :] for e in events]


async def test_stream_passes_chunks_in_order_and_ends_with_done(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    parts = tuple(f"p{i} " for i in range(20))
    stack.primary.script(Stream(text_chunks(PRIMARY_MODEL, parts, usage=True)))
    status, content_type, events = await sse_events(
        http, stack, {"model": "auto", "messages": USER, "stream": True}
    )
    assert status == 200
    assert content_type == "text/event-stream"
    assert events[-1] == b"[DONE]"
    payloads = [orjson.loads(e) for e in events[:-1]]
    text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads if p["choices"])
    assert text == "".join(parts)
    assert payloads[0]["adaptive"]["policy"] == "auto"
    assert payloads[0]["adaptive"]["upstream"] == "primary"
    assert all("adaptive" not in p for p in payloads[1:])


@pytest.mark.parametrize("client_asks", [True, False])
async def test_usage_chunk_present_iff_asked(stack: Stack, client_asks: bool) -> None:
    create = stack.client.chat.completions.create
    if client_asks:
        stream = await create(
            model="auto", messages=USER, stream=True, stream_options={"include_usage": True}
        )
    else:
        stream = await create(model="auto", messages=USER, stream=True)
    chunks = [part async for part in stream]
    usage = [c.usage for c in chunks if c.usage is not None]
    if client_asks:
        assert len(usage) == 1
        assert usage[0].total_tokens == 10
        assert chunks[-1].choices == []
    else:
        assert usage == []
        assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello!"
    # Either way the proxy asks the upstream for usage, for its own accounting.
    assert stack.primary.requests[0].body["stream_options"] == {"include_usage": True}


async def test_first_chunk_carries_adaptive(stack: Stack) -> None:
    stream = await stack.client.chat.completions.create(model="auto", messages=USER, stream=True)
    chunks = [part async for part in stream]
    adaptive = (chunks[0].model_extra or {})["adaptive"]
    assert adaptive["arm"] == "cheap"
    assert adaptive["upstream"] == "primary"
    assert chunks[0].model == PRIMARY_MODEL


async def test_mid_stream_drop_ends_with_error_event_then_done(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    start = (
        chunk(PRIMARY_MODEL, {"role": "assistant", "content": ""}),
        chunk(PRIMARY_MODEL, {"content": "partial"}),
    )
    stack.primary.script(Stream(start, end="drop"))
    status, _, events = await sse_events(
        http, stack, {"model": "auto", "messages": USER, "stream": True}
    )
    assert status == 200
    assert events[-1] == b"[DONE]"
    error = orjson.loads(events[-2])["error"]
    assert error["type"] == "upstream_error"
    assert "primary" in error["message"]
    assert orjson.loads(events[1])["choices"][0]["delta"]["content"] == "partial"
    assert len(stack.primary.requests) == 1  # nothing is retried once bytes went out


async def test_mid_stream_stall_ends_with_timeout_event_then_done(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    stack.primary.script(
        Stream((chunk("fake-slow-model", {"role": "assistant", "content": "hm"}),), end="hang")
    )
    status, _, events = await sse_events(
        http, stack, {"model": "slow", "messages": USER, "stream": True}
    )
    assert status == 200
    assert events[-1] == b"[DONE]"
    assert orjson.loads(events[-2])["error"]["type"] == "timeout_error"
    await asyncio.wait_for(stack.primary.cancelled.wait(), CANCEL_WAIT_S)


async def test_mid_stream_drop_raises_in_sdk(stack: Stack) -> None:
    stack.primary.script(
        Stream((chunk(PRIMARY_MODEL, {"role": "assistant", "content": "par"}),), end="drop")
    )
    stream = await stack.client.chat.completions.create(model="auto", messages=USER, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


@pytest.mark.parametrize(
    ("upstream_status", "client_status"), [(400, 400), (404, 404), (500, 502), (401, 502)]
)
async def test_stream_error_before_first_byte_is_plain_json(
    stack: Stack, http: aiohttp.ClientSession, upstream_status: int, client_status: int
) -> None:
    reply = Reply(status=upstream_status, body={"error": {"message": "nope"}})
    stack.primary.script(reply, reply, reply)
    body = {"model": "primary", "messages": USER, "stream": True}
    async with http.post(f"{stack.base_url}/v1/chat/completions", json=body) as resp:
        assert resp.status == client_status
        assert resp.content_type == "application/json"
        error = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}


async def test_client_disconnect_mid_stream_cancels_upstream(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    stack.primary.script(
        Stream((chunk(PRIMARY_MODEL, {"role": "assistant", "content": "thinking"}),), end="hang")
    )
    stream = await stack.client.chat.completions.create(model="auto", messages=USER, stream=True)
    first = await stream.__anext__()
    assert first.choices[0].delta.content == "thinking"
    await stream.close()
    await asyncio.wait_for(stack.primary.cancelled.wait(), CANCEL_WAIT_S)
    # The upstream billed the prompt even though the client left: it is still accounted.
    async with http.get(f"{stack.base_url}/metrics") as resp:
        text = await resp.text()
    assert 'adaptive_tokens_total{kind="prompt",upstream="primary"}' in text


@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_before_answer_cancels_upstream(stack: Stack, stream: bool) -> None:
    stack.primary.script(Hang())
    request = asyncio.create_task(
        stack.client.chat.completions.create(model="auto", messages=USER, stream=stream)
    )
    await asyncio.wait_for(stack.primary.received.wait(), CANCEL_WAIT_S)
    request.cancel()  # the SDK closes its connection to the proxy
    with pytest.raises(asyncio.CancelledError):
        await request
    await asyncio.wait_for(stack.primary.cancelled.wait(), CANCEL_WAIT_S)


async def test_body_over_limit_is_413(stack: Stack, http: aiohttp.ClientSession) -> None:
    big = [{"role": "user", "content": "x" * (MAX_BODY_BYTES * 2)}]
    async with http.post(
        f"{stack.base_url}/v1/chat/completions", json={"model": "auto", "messages": big}
    ) as resp:
        assert resp.status == 413
        error = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "request_too_large"
    assert stack.primary.requests == []


async def test_malformed_json_is_400(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{stack.base_url}/v1/chat/completions",
        data=b'{"model": "auto", "messages": [',
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]


async def test_unknown_role_is_400_with_param(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await stack.client.chat.completions.create(
            model="auto",
            messages=[*USER, WIZARD],
        )
    assert caught.value.param == "messages[1].role"
    assert stack.primary.requests == []


async def test_models_lists_policies_and_upstream_models(stack: Stack) -> None:
    ids = [model.id async for model in stack.client.models.list()]
    assert ids[:2] == ["auto", "safe"]
    assert {"primary", PRIMARY_MODEL, "backup", "dead"} <= set(ids)


async def test_health_endpoints(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{stack.base_url}/health/liveness") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"
    async with http.get(f"{stack.base_url}/health/readiness") as resp:
        assert resp.status == 200
        ready = await resp.json()
    assert ready["status"] == "ready"
    assert ready["cache"]["status"] == "ok"


async def test_metrics_after_traffic(stack: Stack, http: aiohttp.ClientSession) -> None:
    await stack.client.chat.completions.create(model="auto", messages=USER)
    stream = await stack.client.chat.completions.create(model="auto", messages=USER, stream=True)
    async for _ in stream:
        pass
    async with http.get(f"{stack.base_url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    assert 'adaptive_requests_total{arm="cheap",policy="auto",status="200"} 2.0' in text
    assert 'adaptive_upstream_seconds_count{status="200",upstream="primary"} 2.0' in text
    # 7 prompt + 3 completion tokens per call, from the upstream's usage (the stream's too).
    assert 'adaptive_tokens_total{kind="prompt",upstream="primary"} 14.0' in text
    assert 'adaptive_tokens_total{kind="completion",upstream="primary"} 6.0' in text
    assert 'adaptive_cost_usd_total{upstream="primary"}' in text


async def test_large_stream_event_passes_through(stack: Stack, http: aiohttp.ClientSession) -> None:
    # One event far above aiohttp's default 512 KiB line limit (a big tool-call argument).
    big = "y" * 1_200_000
    stack.primary.script(
        Stream(
            (
                chunk(PRIMARY_MODEL, {"role": "assistant", "content": big}),
                chunk(PRIMARY_MODEL, {}, finish="stop"),
            )
        )
    )
    status, _, events = await sse_events(
        http, stack, {"model": "auto", "messages": USER, "stream": True}
    )
    assert status == 200
    assert events[-1] == b"[DONE]"
    assert orjson.loads(events[0])["choices"][0]["delta"]["content"] == big


async def test_upstream_sse_framing_variants_are_normalised(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    one = orjson.dumps(chunk(PRIMARY_MODEL, {"role": "assistant", "content": "a"}))
    two = orjson.dumps(chunk(PRIMARY_MODEL, {"content": "b"}))
    # No space after ``data:``, CRLF line ends, a keep-alive comment, an event split mid-line.
    raw = (b"data:" + one + b"\r\n\r\n", b": ping\n\n", b"data: " + two[:9], two[9:] + b"\n\n")
    stack.primary.script(Stream((*raw, b"data:[DONE]\n\n"), end="drop"))
    status, _, events = await sse_events(
        http, stack, {"model": "auto", "messages": USER, "stream": True}
    )
    assert status == 200
    assert events[-1] == b"[DONE]"
    assert events.count(b"[DONE]") == 1
    payloads = [orjson.loads(e) for e in events[:-1]]
    assert [p["choices"][0]["delta"]["content"] for p in payloads] == ["a", "b"]
    assert "adaptive" in payloads[0]
