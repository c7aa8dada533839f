"""OpenTelemetry traces (the ``otel`` extra): a span per request, a child span per upstream call.

Only built when the policy file has ``server.otel``; otherwise nothing here is imported and no
middleware is installed, so tracing off costs nothing. Spans are batched in memory and sent by
the SDK's own thread (OTLP over HTTP, protobuf), so neither the event loop nor a request waits
on the collector; a full queue drops spans rather than block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

UpstreamObserver = Callable[[str, float, int | str], None]


class TracingUnavailableError(RuntimeError):
    """``server.otel`` is set but the ``otel`` extra is not installed."""


class Tracing:
    """A tracer provider exporting to one OTLP/HTTP endpoint."""

    def __init__(
        self, endpoint: str, *, service_name: str, timeout_s: float, max_queue_size: int
    ) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.propagators.textmap import DefaultGetter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError as exc:
            raise TracingUnavailableError(
                f"server.otel needs the otel extra: pip install 'adaptive-proxy[otel]' ({exc})"
            ) from None
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout_s)
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=max_queue_size, schedule_delay_millis=1000)
        )
        self._tracer = self._provider.get_tracer("adaptive_proxy")
        self._propagator = TraceContextTextMapPropagator()
        self._getter = DefaultGetter()

    def start_request(self, name: str, headers: Mapping[str, str]) -> Any:
        """A server span continuing the client's W3C ``traceparent`` (if any), made current.

        Returns a token for :meth:`end_request`.
        """
        from opentelemetry import context, trace

        parent = self._propagator.extract(
            {k.lower(): v for k, v in headers.items()}, getter=self._getter
        )
        span = self._tracer.start_span(name, context=parent, kind=trace.SpanKind.SERVER)
        token = context.attach(trace.set_span_in_context(span, parent))
        return span, token

    def end_request(self, started: Any, status: int, attributes: Mapping[str, Any]) -> None:
        """Close the request's span with its status and the decision's attributes."""
        from opentelemetry import context, trace

        span, token = started
        span.set_attribute("http.response.status_code", status)
        for key, value in attributes.items():
            if value is not None:
                span.set_attribute(key, value)
        if status >= 500:
            span.set_status(trace.Status(trace.StatusCode.ERROR))
        span.end()
        context.detach(token)

    def upstream_observer(self, inner: UpstreamObserver) -> UpstreamObserver:
        """Wrap the upstream-latency callback: each call also becomes a child span of the
        request it belongs to (the callback runs in the request's context, once the call has
        ended; the span is back-dated by the call's duration)."""
        from opentelemetry import trace

        tracer = self._tracer

        def observe(upstream: str, seconds: float, status: int | str) -> None:
            inner(upstream, seconds, status)
            end_ns = time.time_ns()
            span = tracer.start_span(
                f"upstream {upstream}",
                kind=trace.SpanKind.CLIENT,
                start_time=end_ns - int(seconds * 1e9),
                attributes={"adaptive.upstream": upstream, "adaptive.upstream_status": str(status)},
            )
            if not (isinstance(status, int) and status < 400):
                span.set_status(trace.Status(trace.StatusCode.ERROR))
            span.end(end_time=end_ns)

        return observe

    def shutdown(self) -> None:
        """Send the spans still queued and stop the exporter thread (blocks: run in a thread)."""
        self._provider.shutdown()
