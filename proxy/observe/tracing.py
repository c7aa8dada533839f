"""OpenTelemetry traces (the ``otel`` extra): a span per request, child spans per upstream call,
sequential round, cascade stage and reranker call.

Only built when the policy file has ``server.otel``; otherwise the SDK is never imported, no
middleware is installed and executors get :data:`NO_STEPS`, whose ``step`` hands back one shared
inert object (no span is made), and rerankers are not wrapped: tracing off costs nothing. Spans
are batched in memory and sent by the SDK's own thread (OTLP over HTTP, protobuf), so neither
the event loop nor a request waits on the collector; a full queue drops spans rather than block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

UpstreamObserver = Callable[[str, float, int | str], None]


class StepSpan(Protocol):
    """An open child span: what a step learns while it runs is set on it."""

    def set_attribute(self, key: str, value: Any) -> None: ...


class Steps(Protocol):
    """Child spans for the steps of a request (sequential rounds, cascade stages, reranker calls).

    :data:`NO_STEPS` when tracing is off: its spans are one shared object that records nothing.
    """

    def step(self, name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[StepSpan]:
        """A child span of the current one, current while the ``with`` block runs."""
        ...


class _NoSpan:
    """The span of :data:`NO_STEPS`: its own context manager, one instance for every step."""

    def set_attribute(self, key: str, value: Any) -> None:
        """Records nothing."""

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _NoSteps:
    """Tracing off: every step is the same inert object (no span is created)."""

    _span = _NoSpan()

    def step(self, name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[StepSpan]:
        """The shared inert span."""
        return self._span


NO_STEPS: Steps = _NoSteps()


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

    def step(self, name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[StepSpan]:
        """A child span of the current span (the request's, a round's), made current so the
        upstream calls inside it are its children; ``None`` attributes are left out. An exception
        leaving the block marks the span an error."""
        return self._step(name, attributes)

    @contextmanager
    def _step(self, name: str, attributes: Mapping[str, Any]) -> Iterator[StepSpan]:
        present = {k: v for k, v in attributes.items() if v is not None}
        with self._tracer.start_as_current_span(name, attributes=present) as span:
            yield span

    def shutdown(self) -> None:
        """Send the spans still queued and stop the exporter thread (blocks: run in a thread)."""
        self._provider.shutdown()
