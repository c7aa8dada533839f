"""The one SSE writer: an executor's :class:`~proxy.execute.seam.EventStream` as the HTTP response.

It starts the stream, puts the ``adaptive`` object into the first data chunk, sends
``: keep-alive`` comments while the stream's ``warmup`` runs, reports a failure after the status
line as ``data: {"error": …}``, and always ends with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
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
    response = web.StreamResponse(headers={**_SSE_HEADERS, **stream.headers})
    events = stream.events
    try:
        await response.prepare(request)
        request[STREAM_STARTED] = response
    except BaseException:
        if isinstance(stream.warmup, asyncio.Future):
            stream.warmup.cancel()
        await events.aclose()
        raise
    try:
        if stream.warmup is not None:
            await _await_with_keepalives(response, stream.warmup, stream.keepalive_interval_s)
        first = True
        async for event in events:
            if first and event.startswith(b"data: "):
                event = with_adaptive(event, stream.adaptive())
                first = False
            await response.write(event)
    except ProxyError as error:
        log.warning("stream from %s failed mid-way: %s", stream.source, error.message)
        await response.write(sse_event(error.to_dict()))
    except ConnectionError:
        raise  # the client is gone; there is no one left to tell
    except Exception:
        # The status line is out, so the error middleware can no longer answer; without this
        # the client would wait on a stream that never ends.
        log.exception("stream from %s broke", stream.source)
        internal = ProxyError("internal error in the proxy; see its log")
        await response.write(sse_event(internal.to_dict()))
    finally:
        await events.aclose()
    await response.write(SSE_DONE)
    await response.write_eof()
    return response
