"""The app's one middleware: request id, the client's spend, the access-log line, and the
headers every response carries (``x-request-id``; ``x-adaptive-policy`` on errors too), around
the error handling and authentication.

Access, errors and auth were three middlewares, each a coroutine and a wrapper around the
handler on every request; :func:`proxy_middleware` runs them in two frames, in the same order
(the access log sees the final status of every response, errors included; auth errors are
rendered like any other).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.http.auth import authenticate_request
from proxy.http.middleware import guarded
from proxy.http.state import AUTH, CLIENT, CONFIG, RECORD
from proxy.observe.access_log import (
    REQUEST_ID_HEADER,
    AccessLog,
    RequestRecord,
    request_id_of,
    write_access_line,
)

# Set by create_app: the access lines of one loop turn, logged together after its responses.
ACCESS_LOG = web.AppKey("adaptive_access_log", AccessLog)


async def access_log_ctx(app: web.Application) -> AsyncIterator[None]:
    """The app's :class:`AccessLog`; the lines still queued are logged when the app stops."""
    access_log = app[ACCESS_LOG] = AccessLog()
    try:
        yield
    finally:
        access_log.flush()


@web.middleware
async def proxy_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its record, authenticate it and answer errors in the OpenAI shape
    (:func:`~proxy.http.middleware.guarded`); when it ends, book its spend (in the background)
    and write its log line."""
    record = RequestRecord(request_id_of(request), time.perf_counter())
    request[RECORD] = record
    status = 500
    try:
        response = await guarded(request, handler, authenticate_request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away; what it cost is still booked below
        raise
    finally:
        client = request.get(CLIENT)
        auth = request.app.get(AUTH)
        if client is not None and auth is not None:
            auth.record_spend(client, record.cost_usd)
        if request.app[CONFIG].snapshot.config.server.access_log.enabled:
            write_access_line(
                request,
                record,
                status,
                client.name if client else None,
                request.app.get(ACCESS_LOG),
            )


async def add_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the request id on every response, the policy on errors too."""
    record = request.get(RECORD)
    if record is None:
        return
    response.headers[REQUEST_ID_HEADER] = record.request_id
    # Successful answers carry the decision's headers already; errors get what is known.
    if record.policy is not None and "x-adaptive-policy" not in response.headers:
        response.headers["x-adaptive-policy"] = record.policy
        if record.arm is not None:
            response.headers["x-adaptive-arm"] = record.arm
