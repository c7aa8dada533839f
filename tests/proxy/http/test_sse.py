"""The one SSE writer, served by a real aiohttp server and read by a real client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

import aiohttp
import orjson
from aiohttp import web

from proxy.execute.seam import EventStream, Outcome
from proxy.http.middleware import error_middleware
from proxy.http.sse import write_sse
from proxy.wire.errors import UpstreamError
from proxy.wire.protocol import sse_event
from tests.servers import running


def _app(make_stream: Callable[[], EventStream]) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await write_sse(request, make_stream())

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/stream", handler)
    return app


async def _read(url: str) -> tuple[str, list[bytes]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/stream") as response:
        body = await response.read()
        return response.headers["Content-Type"], [e for e in body.split(b"\n\n") if e]


async def test_keepalives_while_warming_up_then_adaptive_in_the_first_chunk_then_done() -> None:
    async def warmup() -> None:
        await asyncio.sleep(0.12)

    async def events() -> AsyncGenerator[bytes, None]:
        yield sse_event({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
        yield sse_event({"choices": [{"index": 0, "delta": {"content": "!"}}]})

    def make() -> EventStream:
        return EventStream(
            events=events(),
            adaptive=lambda: {"policy": "p", "n": 3},
            headers={"x-adaptive-policy": "p"},
            outcome=Outcome(),
            warmup=asyncio.ensure_future(warmup()),
            keepalive_interval_s=0.03,
        )

    async with running(_app(make)) as url:
        content_type, events_seen = await _read(url)
    assert content_type.startswith("text/event-stream")
    assert events_seen[0] == b": keep-alive"
    data = [e for e in events_seen if e.startswith(b"data: ")]
    first = orjson.loads(data[0][6:])
    assert first["adaptive"] == {"policy": "p", "n": 3}
    assert "adaptive" not in orjson.loads(data[1][6:])
    assert data[-1] == b"data: [DONE]"


async def test_a_failure_after_the_status_line_is_an_error_event_then_done() -> None:
    async def events() -> AsyncGenerator[bytes, None]:
        yield sse_event({"choices": [{"index": 0, "delta": {"content": "par"}}]})
        raise UpstreamError("upstream 'x' dropped the stream", upstream="x")

    def make() -> EventStream:
        return EventStream(
            events=events(), adaptive=lambda: {}, headers={}, outcome=Outcome(), source="x"
        )

    async with running(_app(make)) as url:
        _, events_seen = await _read(url)
    error = orjson.loads(events_seen[-2][6:])
    assert error["error"]["message"] == "upstream 'x' dropped the stream"
    assert events_seen[-1] == b"data: [DONE]"


async def test_a_failed_warmup_is_an_error_event_then_done() -> None:
    async def warmup() -> None:
        raise UpstreamError("all 3 samples failed: boom", upstream="pool")

    async def events() -> AsyncGenerator[bytes, None]:
        yield sse_event({"never": "sent"})

    def make() -> EventStream:
        return EventStream(
            events=events(),
            adaptive=lambda: {},
            headers={},
            outcome=Outcome(),
            warmup=asyncio.ensure_future(warmup()),
        )

    async with running(_app(make)) as url:
        _, events_seen = await _read(url)
    assert len(events_seen) == 2
    assert b"all 3 samples failed" in events_seen[0]
    assert events_seen[1] == b"data: [DONE]"
