"""The outermost middleware: request id, the client's spend, the access-log line, and the
headers every response carries (``x-request-id``; ``x-adaptive-policy`` on errors too)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.http.state import AUTH, CLIENT, CONFIG, RECORD
from proxy.observe.access_log import (
    REQUEST_ID_HEADER,
    RequestRecord,
    request_id_of,
    write_access_line,
)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its record; when it ends, book its spend (in the background) and write
    its log line."""
    record = RequestRecord(request_id_of(request), time.perf_counter())
    request[RECORD] = record
    status = 500
    try:
        response = await handler(request)
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
            write_access_line(request, record, status, client.name if client else None)


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
