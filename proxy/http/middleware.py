"""The error middleware: every failure leaves the proxy in the one OpenAI error shape.

:func:`guarded` is its body; the app runs it inside its one middleware
(:func:`proxy.http.access_middleware.proxy_middleware`), with authentication inside it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.http.drain import DRAIN, Drain
from proxy.wire.errors import ProxyError, ServiceUnavailableError
from proxy.wire.protocol import SSE_DONE, sse_event

log = logging.getLogger("adaptive_proxy")

# The stream response, set once a handler has sent its status line: an error can no longer
# become a JSON response, so the middleware lets it propagate and aiohttp closes the connection.
STREAM_STARTED = web.RequestKey("adaptive_stream_started", web.StreamResponse)
SHUTDOWN_MESSAGE = "the proxy is shutting down and this request ran past its grace period"

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def error_response(error: ProxyError) -> web.Response:
    """A JSON error response with the error's status and headers."""
    return web.Response(
        status=error.status,
        body=orjson.dumps(error.to_dict()),
        content_type="application/json",
        headers=error.headers,
    )


Authenticate = Callable[[web.Request], Awaitable[None]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render :class:`ProxyError` and aiohttp's HTTP errors as OpenAI errors; hide crashes."""
    return await guarded(request, handler)


async def guarded(
    request: web.Request, handler: Handler, authenticate: Authenticate | None = None
) -> web.StreamResponse:
    """``handler``'s answer, or the error it raised (or ``authenticate`` raised before it) as
    an OpenAI error; refuses requests while the proxy drains and tracks those in flight."""
    # An app built without create_app (a test of one component) has no drain state.
    state = request.app.get(DRAIN) or Drain()
    if state.draining and not request.path.startswith("/health/"):
        # A keep-alive client may still send a request while the proxy drains.
        refused = error_response(
            ServiceUnavailableError(
                "the proxy is shutting down", code="shutting_down", headers={"Retry-After": "1"}
            )
        )
        refused.force_close()
        return refused
    task = asyncio.current_task()
    if task is not None:
        state.in_flight.add(task)
    try:
        if authenticate is not None:
            await authenticate(request)
        return await handler(request)
    except asyncio.CancelledError:
        if task is None or not state.grace_expired:
            raise  # the client went away: nobody to answer
        # Cancelled by the shutdown: answer instead of dropping the connection.
        task.uncancel()
        return await _shutdown_answer(request)
    except ProxyError as error:
        if request.get(STREAM_STARTED) is not None:
            raise
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason
        if exc.status == 413:
            message = f"request body too large: {exc.text} (see server.max_body_bytes)"
        http_error = ProxyError(message, status=exc.status, code=_HTTP_CODES.get(exc.status))
        http_error.error_type = "invalid_request_error"
        return error_response(http_error)
    except (ConnectionResetError, web.HTTPClientError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if request.get(STREAM_STARTED) is not None:
            raise
        return error_response(ProxyError("internal error in the proxy; see its log"))
    finally:
        if task is not None:
            state.in_flight.discard(task)


async def _shutdown_answer(request: web.Request) -> web.StreamResponse:
    error = ServiceUnavailableError(
        SHUTDOWN_MESSAGE, code="shutting_down", headers={"Retry-After": "1"}
    )
    stream: web.StreamResponse | None = request.get(STREAM_STARTED)
    if stream is None:
        return error_response(error)
    try:
        await stream.write(sse_event(error.to_dict()))
        await stream.write(SSE_DONE)
        await stream.write_eof()
    except ConnectionError:
        pass  # the client left as well
    return stream
