"""The error middleware: every failure leaves the proxy in the one OpenAI error shape."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.errors import ProxyError

log = logging.getLogger("adaptive_proxy")

# Set once a handler has sent the status line of a stream: an error can no longer become a JSON
# response, so the middleware lets it propagate and aiohttp closes the connection.
STREAM_STARTED = web.RequestKey("adaptive_stream_started", bool)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def error_response(error: ProxyError) -> web.Response:
    """A JSON error response with the error's status and headers."""
    return web.Response(
        status=error.status,
        body=orjson.dumps(error.to_dict()),
        content_type="application/json",
        headers=error.headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render :class:`ProxyError` and aiohttp's HTTP errors as OpenAI errors; hide crashes."""
    try:
        return await handler(request)
    except ProxyError as error:
        if request.get(STREAM_STARTED):
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
        if request.get(STREAM_STARTED):
            raise
        return error_response(ProxyError("internal error in the proxy; see its log"))
