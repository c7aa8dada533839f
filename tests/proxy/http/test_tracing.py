"""``server.otel``: spans of real requests, received and decoded by an in-process OTLP/HTTP
collector (protobuf), the client's ``traceparent`` continued."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from openai import AsyncOpenAI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from proxy.config.schema import load_config_text
from proxy.http.app import create_app
from proxy.http.tracing import tracing_middleware
from replay.store import ReplayStore
from tests.proxy.http.dashboard_workload import (
    POLICY,
    dashboard_config,
    gsm8k_messages,
    steering,
)
from tests.replay_helpers import replay_upstreams
from tests.servers import running

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP traces receiver: decodes every export it gets."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/traces", self._traces)

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {}
                    for a in span.attributes:
                        value = a.value
                        kind = value.WhichOneof("value")
                        attributes[a.key] = getattr(value, kind) if kind else None
                    self.spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "service": service.get("service.name"),
                            "attributes": attributes,
                            "duration_ns": span.end_time_unix_nano - span.start_time_unix_nano,
                        }
                    )
        return web.Response(body=b"", content_type="application/x-protobuf")


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    received = Collector()
    async with running(received.app) as url:
        yield received, f"{url}/v1/traces"


async def test_request_and_upstream_spans_continue_the_clients_trace(
    replay_base_url: str, replay_store: ReplayStore, collector: tuple[Collector, str]
) -> None:
    received, endpoint = collector
    text = POLICY.format(
        upstreams=replay_upstreams(replay_base_url, pool=True),
        auth=f'server: {{otel: {{endpoint: "{endpoint}", service_name: test-proxy}}}}',
        cache="",
    )
    config = load_config_text(text, env={})
    conversations = gsm8k_messages(replay_store, 2)
    app = create_app(config, predictor=steering())
    async with running(app) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
            await client.chat.completions.create(
                model="auto",
                messages=conversations[0],
                extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
            )
            await client.chat.completions.create(model="casc", messages=conversations[1])
    # The app has stopped: its provider sent every queued span on the way out.
    servers = [s for s in received.spans if s["name"] == "POST /v1/chat/completions"]
    assert len(servers) == 2
    routed = next(s for s in servers if s["trace_id"] == TRACE_ID)
    assert routed["parent"] == PARENT_ID
    assert routed["service"] == "test-proxy"
    attrs = routed["attributes"]
    assert attrs["adaptive.policy"] == "auto"
    assert attrs["adaptive.arm"] == "expensive"  # the steered hard question
    assert attrs["adaptive.n"] == 1
    assert attrs["adaptive.cache"] == "miss"
    assert attrs["adaptive.cost_usd"] > 0
    assert attrs["http.response.status_code"] == 200
    assert "adaptive.gain" in attrs
    children = [s for s in received.spans if s["parent"] == routed["span_id"]]
    assert [c["name"] for c in children] == ["upstream gpt-4"]
    assert children[0]["trace_id"] == TRACE_ID and children[0]["duration_ns"] > 0
    cascade = next(s for s in servers if s["trace_id"] != TRACE_ID)
    assert cascade["parent"] == ""  # no traceparent: a new trace
    stages = {s["name"] for s in received.spans if s["parent"] == cascade["span_id"]}
    assert stages >= {"upstream checker", "upstream mixtral"}  # each stage's call
    assert cascade["attributes"]["adaptive.policy"] == "casc"


def test_without_server_otel_there_is_no_tracing_middleware(replay_base_url: str) -> None:
    app = create_app(dashboard_config(replay_base_url), predictor=steering())
    assert tracing_middleware not in app.middlewares
