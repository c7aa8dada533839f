"""The HTTP server under the app: connection limits, read timeouts, and errors in one shape.

aiohttp answers some requests before any handler (and so any middleware) runs: malformed HTTP
gets its plain-text 400. :class:`ProxyRunner` serves the app through :class:`ProxyServer`, whose
connections (:class:`ProxyRequestHandler`) answer those in the OpenAI error shape too, close
connections that do not finish their request headers within ``server.header_timeout_s``, close
idle keep-alive connections after ``server.idle_timeout_s``, and refuse connections beyond
``server.max_connections`` with a 503 and ``Retry-After`` (logged once per episode) instead of
running out of file descriptors. Request bodies reach the app as they arrived, still encoded:
:func:`proxy.http.body.read_body` undoes ``Content-Encoding`` and answers a body that does not
match it
with one error and one log line.

:func:`start_site` is the one way the proxy starts listening: ``serve``, the demo, the live
benchmarks and the tests' servers all run the app through it, so they all measure and test the
server users run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from proxy.http.drain import DRAIN
from proxy.http.state import CONFIG
from proxy.wire.errors import ProxyError, ServiceUnavailableError

log = logging.getLogger("adaptive_proxy.server")

_REFUSE_RETRY_AFTER_S = 1
_LINGER_S = 1.0
# How long cancelled requests get to send their error once the grace period is over.
_AFTER_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Per-connection bounds, from the ``server`` section."""

    header_timeout_s: float
    idle_timeout_s: float
    max_connections: int


def _error_bytes(error: ProxyError) -> bytes:
    return orjson.dumps(error.to_dict())


class ProxyRequestHandler(RequestHandler):
    """One client connection: aiohttp's, plus the header deadline and the connection cap."""

    def __init__(self, manager: ProxyServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._proxy_server = manager
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._proxy_server
        if not server.admit():
            self._refuse(transport)
            return
        self._header_deadline = self._loop.call_later(
            server.limits.header_timeout_s, self._headers_overdue
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_deadline is not None and self._request_count > 0:
            # The first request's headers are complete; later ones are bounded by the idle
            # timeout, which aiohttp applies between requests.
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_overdue(self) -> None:
        self._header_deadline = None
        if self._request_count == 0 and self.transport is not None:
            error = ProxyError(
                "request headers not received within "
                f"{self._proxy_server.limits.header_timeout_s:g} s (server.header_timeout_s)",
                status=408,
                code="request_timeout",
            )
            error.error_type = "invalid_request_error"
            self.transport.write(_raw_response(error))
            self.force_close()
            self.transport.close()

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        error = ServiceUnavailableError(
            "the proxy is at its connection limit (server.max_connections); retry shortly",
            code="too_many_connections",
            headers={"Retry-After": str(_REFUSE_RETRY_AFTER_S)},
        )
        assert isinstance(transport, asyncio.Transport)
        transport.write(_raw_response(error))
        self.force_close()
        transport.close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Errors aiohttp answers itself (malformed HTTP, a crashed handler) as OpenAI errors."""
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        if status >= 500:
            self.log_exception("error handling request from %s", request.remote, exc_info=exc)
            error = ProxyError("internal error in the proxy; see its log", status=status)
        else:
            # A client's malformed bytes are its problem, not the proxy's: no traceback.
            log.debug("malformed HTTP from %s: %s", request.remote, exc)
            detail = (getattr(exc, "message", None) or message or "").strip()
            error = ProxyError(
                f"malformed HTTP request: {detail}" if detail else "malformed HTTP request",
                status=status,
                code="bad_http_request",
            )
            error.error_type = "invalid_request_error"
        json_response = web.Response(
            status=status, body=_error_bytes(error), content_type="application/json"
        )
        json_response.force_close()
        return json_response


def _raw_response(error: ProxyError) -> bytes:
    """A complete HTTP/1.1 response for a connection no request handler will serve."""
    body = _error_bytes(error)
    reason = {408: "Request Timeout", 503: "Service Unavailable"}.get(error.status, "Error")
    head = [
        f"HTTP/1.1 {error.status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in error.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class ProxyServer(web.Server):
    """aiohttp's server with :class:`ProxyRequestHandler` connections and a connection cap."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", limits.idle_timeout_s)
        # After an early answer (413, 408) aiohttp drains the rest of the body so the client can
        # read the answer; 10 s by default would let a slow client hold its connection on.
        kwargs.setdefault("lingering_time", _LINGER_S)
        # aiohttp's parser would decode gzip/deflate itself and fail with a traceback in the log
        # or a malformed-HTTP answer; proxy.http.body decodes them instead.
        kwargs["auto_decompress"] = False
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.refused = 0
        self._refusing = False

    def admit(self) -> bool:
        """Whether a just-made connection may stay; logs once when refusals start and end."""
        open_now = len(self._connections)
        if open_now <= self.limits.max_connections:
            if self._refusing and open_now < self.limits.max_connections:
                self._refusing = False
                log.info(
                    "accepting connections again (%d refused during the episode)", self.refused
                )
                self.refused = 0
            return True
        self.refused += 1
        if not self._refusing:
            self._refusing = True
            log.warning(
                "connection limit reached (server.max_connections = %d): refusing new "
                "connections with 503 until some close",
                self.limits.max_connections,
            )
        return False

    def __call__(self) -> RequestHandler:
        return ProxyRequestHandler(self, loop=self._loop, **self._kwargs)


class ProxyRunner(web.AppRunner):
    """``web.AppRunner`` for the proxy app: serves it through :class:`ProxyServer`.

    :meth:`cleanup` drains within ``server.shutdown_timeout_s``: readiness turns 503 and new
    requests are refused at once, requests in flight get the grace period to finish, and those
    still running then end with a clean 503 (or an SSE error event and ``[DONE]``).
    """

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        # Our own drain runs first; aiohttp's then only closes what is left.
        kwargs.setdefault("shutdown_timeout", _AFTER_GRACE_S)
        super().__init__(app, **kwargs)

    async def cleanup(self) -> None:
        """Stop listening, drain in-flight requests within the grace period, then close."""
        state = self.app[DRAIN]
        grace_s = self.app[CONFIG].snapshot.config.server.shutdown_timeout_s
        state.draining = True
        for site in list(self.sites):
            await site.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while state.in_flight and (left_s := deadline - loop.time()) > 0:
            await asyncio.wait(set(state.in_flight), timeout=left_s)
        if state.in_flight:
            log.warning(
                "shutdown: %d request(s) still running after %g s (server.shutdown_timeout_s); "
                "ending them with an error",
                len(state.in_flight),
                grace_s,
            )
            state.grace_expired = True
            for task in list(state.in_flight):
                task.cancel()
            await asyncio.wait(set(state.in_flight), timeout=_AFTER_GRACE_S)
        await super().cleanup()

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        server = self.app[CONFIG].snapshot.config.server
        limits = ConnectionLimits(
            header_timeout_s=server.header_timeout_s,
            idle_timeout_s=server.idle_timeout_s,
            max_connections=server.max_connections,
        )
        return ProxyServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            limits=limits,
            **plain._kwargs,
        )


@dataclass(frozen=True, slots=True)
class RunningSite:
    """A proxy app listening on a socket; :meth:`close` drains it and stops it."""

    runner: ProxyRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the bound address (the real port when asked for port 0)."""
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        """Stop listening, drain in-flight requests (``server.shutdown_timeout_s``), clean up."""
        await self.runner.cleanup()


async def start_site(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    reuse_port: bool = False,
    backlog: int = 1024,
) -> RunningSite:
    """Serve the proxy ``app`` on ``host:port`` (0: a free port) as ``serve`` does.

    Handler cancellation is on (a client that disconnects cancels its upstream requests), the
    access log is the proxy's own (aiohttp's is off), and connections get the limits of
    :class:`ProxyServer`. ``reuse_port`` lets ``serve --workers N`` share one port.
    """
    runner = ProxyRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, host, port, backlog=backlog, reuse_address=True, reuse_port=reuse_port or None
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    return RunningSite(runner=runner, host=str(bound_host), port=int(bound_port))
