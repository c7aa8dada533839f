"""``server.otel``: OpenTelemetry traces over OTLP/HTTP (off unless the section is there)."""

from __future__ import annotations

from pydantic import Field

from proxy.policies.spec import StrictModel


class OtelConfig(StrictModel):
    """Where spans go: an OTLP/HTTP traces endpoint (needs the ``otel`` extra installed)."""

    endpoint: str  # e.g. http://otel-collector:4318/v1/traces
    service_name: str = "adaptive-proxy"
    timeout_s: float = Field(5.0, gt=0)
    # Spans wait in memory at most this many; past it new ones are dropped, never blocking.
    max_queue_size: int = Field(2048, ge=1)
