"""The one SSE writer: an executor's :class:`~proxy.execute.seam.EventStream` as the HTTP response.

It starts the stream, puts the ``adaptive`` object into the first data chunk, sends
``: keep-alive`` comments while the stream's ``warmup`` runs, reports a failure after the status
line as ``data: {"error": …}``, and always ends with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from proxy.execute.seam import EventStream, JsonResult, with_adaptive
from proxy.http.middleware import STREAM_STARTED
from proxy.wire.errors import ProxyError
from proxy.wire.protocol import SSE_DONE, SSE_KEEPALIVE, sse_event

log = logging.getLogger("adaptive_proxy.responses")

_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def json_response(result: JsonResult) -> web.Response:
    """The HTTP response of a complete completion."""
    return web.Response(
        body=orjson.dumps(result.body), content_type="application/json", headers=result.headers
    )


async def _await_with_keepalives(
    response: web.StreamResponse, warmup: Awaitable[Any], interval_s: float
) -> None:
    work = asyncio.ensure_future(warmup)
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=interval_s)
            if done:
                break
            await response.write(SSE_KEEPALIVE)
        work.result()
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work


async def write_sse(request: web.Request, stream: EventStream) -> web.StreamResponse:
    """Send ``stream`` as the SSE response; failures after the status line end it honestly."""
    return await write_events(
        request,
        stream.events,
        headers=stream.headers,
        source=stream.source,
        error_event=sse_event,
        warmup=stream.warmup,
        keepalive_interval_s=stream.keepalive_interval_s,
        first_data=lambda event: with_adaptive(event, stream.adaptive()),
        end=SSE_DONE,
    )


async def write_events(
    request: web.Request,
    events: AsyncIterator[bytes],
    *,
    headers: dict[str, str],
    source: str,
    error_event: Callable[[dict[str, Any]], bytes],
    warmup: Awaitable[Any] | None = None,
    keepalive_interval_s: float = 5.0,
    first_data: Callable[[bytes], bytes] | None = None,
    end: bytes | None = None,
    what: str = "stream",
) -> web.StreamResponse:
    """Send any SSE ``events`` as the response: the one writer of chat and Responses streams.

    ``error_event`` renders an OpenAI error body (``{"error": …}``) as the event that reports a
    failure after the status line; ``first_data`` rewrites the first ``data:`` event; ``end``,
    when given, is written after the last event (chat's ``[DONE]``; Responses has none).
    ``what`` names the stream in log lines.
    """
    response = web.StreamResponse(headers={**_SSE_HEADERS, **headers})
    try:
        await response.prepare(request)
        request[STREAM_STARTED] = response
    except BaseException:
        if isinstance(warmup, asyncio.Future):
            warmup.cancel()
        await _close(events)
        raise
    try:
        if warmup is not None:
            await _await_with_keepalives(response, warmup, keepalive_interval_s)
        async for event in events:
            if first_data is not None and event.startswith(b"data: "):
                event = first_data(event)
                first_data = None
            await response.write(event)
    except ProxyError as error:
        log.warning("%s from %s failed mid-way: %s", what, source, error.message)
        await response.write(error_event(error.to_dict()))
    except ConnectionError:
        raise  # the client is gone; there is no one left to tell
    except Exception:
        # The status line is out, so the error middleware can no longer answer; without this
        # the client would wait on a stream that never ends.
        log.exception("%s from %s broke", what, source)
        internal = ProxyError("internal error in the proxy; see its log")
        await response.write(error_event(internal.to_dict()))
    finally:
        await _close(events)
    if end is not None:
        await response.write(end)
    await response.write_eof()
    return response


async def _close(events: AsyncIterator[bytes]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
