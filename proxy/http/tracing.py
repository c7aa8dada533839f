"""``server.otel``: the tracing middleware and the resource behind it (one ``cleanup_ctx``).

:func:`tracing_parts` gives ``create_app`` nothing when ``server.otel`` is absent (no middleware,
no context: tracing off costs nothing), else the outermost middleware and the context that owns
the tracer provider. The request span carries the decision's attributes (policy, arm, n, gain,
decision cache, cost); each upstream call is a child span (``proxy.http.app`` wraps the upstream
latency callback with :meth:`Tracing.upstream_observer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.config.schema import Config
from proxy.http.state import RECORD
from proxy.observe.tracing import Tracing, TracingUnavailableError
from proxy.wire.errors import ConfigError

TRACING = web.AppKey("adaptive_tracing", Tracing)
# Probes and the scraper are not traced (they would drown the traces).
_UNTRACED_PREFIXES = ("/health/", "/metrics", "/dashboard")


def _attributes(request: web.Request, response: web.StreamResponse | None) -> dict[str, Any]:
    headers = response.headers if response is not None else {}
    record = request.get(RECORD)
    gain = headers.get("x-adaptive-gain")
    n = headers.get("x-adaptive-n")
    return {
        "http.request.method": request.method,
        "url.path": request.path,
        "adaptive.policy": headers.get("x-adaptive-policy"),
        "adaptive.arm": headers.get("x-adaptive-arm"),
        "adaptive.n": int(n) if n and n.isdigit() else None,
        "adaptive.gain": float(gain) if gain else None,
        "adaptive.cache": headers.get("x-adaptive-cache"),
        "adaptive.cost_usd": record.cost_usd if record is not None else None,
        "adaptive.upstream": record.upstream if record is not None else None,
        "adaptive.samples": record.n if record is not None else None,
    }


@web.middleware
async def tracing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A server span around the request (continuing the client's ``traceparent``)."""
    tracing = request.app.get(TRACING)
    if tracing is None or request.path.startswith(_UNTRACED_PREFIXES):
        return await handler(request)
    started = tracing.start_request(f"{request.method} {request.path}", request.headers)
    response: web.StreamResponse | None = None
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        tracing.end_request(started, status, _attributes(request, response))


def _tracing_ctx(config: Config) -> Callable[[web.Application], AsyncIterator[None]]:
    spec = config.server.otel
    assert spec is not None

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        try:
            tracing = Tracing(
                spec.endpoint,
                service_name=spec.service_name,
                timeout_s=spec.timeout_s,
                max_queue_size=spec.max_queue_size,
            )
        except TracingUnavailableError as exc:
            raise ConfigError([("server.otel", str(exc))]) from None
        app[TRACING] = tracing
        try:
            yield
        finally:
            await asyncio.to_thread(tracing.shutdown)  # the last spans reach the collector

    return ctx


def tracing_parts(
    config: Config,
) -> tuple[list[Middleware], list[Callable[[web.Application], AsyncIterator[None]]]]:
    """The middleware and cleanup context tracing needs (none when ``server.otel`` is off)."""
    if config.server.otel is None:
        return [], []
    return [tracing_middleware], [_tracing_ctx(config)]
