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
from recorded_data.records import MODEL_STRONG, MODEL_WEAK
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
    [steps] = [s for s in received.spans if s["parent"] == cascade["span_id"]]
    assert steps["name"] == "cascade"
    stages = {s["span_id"]: s["name"] for s in received.spans if s["parent"] == steps["span_id"]}
    assert set(stages.values()) >= {"cascade stage checker", "cascade stage mixtral"}
    calls = {stages[s["parent"]]: s["name"] for s in received.spans if s["parent"] in stages}
    assert calls["cascade stage mixtral"] == "upstream mixtral"  # each stage's call inside it
    assert calls["cascade stage checker"] == "upstream checker"
    assert cascade["attributes"]["adaptive.policy"] == "casc"


def test_without_server_otel_there_is_no_tracing_middleware(replay_base_url: str) -> None:
    app = create_app(dashboard_config(replay_base_url), predictor=steering())
    assert tracing_middleware not in app.middlewares


STEPS_POLICY = """
server: {{otel: {{endpoint: "{endpoint}"}}}}
upstreams:
  mixtral: {{base_url: "{url}", model: "{weak}", price_in_per_mtok_usd: 0.6,
            price_out_per_mtok_usd: 0.6}}
  gpt-4: {{base_url: "{url}", model: "{strong}", price_in_per_mtok_usd: 10,
          price_out_per_mtok_usd: 30}}
  pool: {{base_url: "{url}", model: gsm8k-pool, supports_n: false,
         price_in_per_mtok_usd: 0.6, price_out_per_mtok_usd: 0.6}}
policies:
  seq:
    type: best_of_k
    upstream: pool
    n_max: 3
    predictor_output: p_weak
    reranker: {{type: reward, url: "{reward}"}}
    sequential: {{first_n: 1, step_n: 1, stop: {{kind: verifier, accept_score: 0.5}}}}
  climb:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: gpt-4}}]
    escalate: {{threshold: 0.0}}
  judged: {{type: best_of_k, upstream: pool, n_min: 2, n_max: 2,
            reranker: {{type: judge, upstream: mixtral}}}}
"""


@pytest.fixture
async def rejecting_reward() -> AsyncIterator[str]:
    """A reward endpoint that scores every candidate 0 (a verifier that never accepts)."""

    async def score(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"scores": [0.0] * len(body["candidates"])})

    app = web.Application()
    app.router.add_post("/score", score)
    async with running(app) as url:
        yield f"{url}/score"


def _children(spans: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in spans if s["parent"] == parent["span_id"]]


async def test_rounds_stages_and_reward_calls_are_child_spans(
    replay_base_url: str,
    replay_store: ReplayStore,
    collector: tuple[Collector, str],
    rejecting_reward: str,
) -> None:
    received, endpoint = collector
    text = STEPS_POLICY.format(
        url=replay_base_url,
        weak=MODEL_WEAK,
        strong=MODEL_STRONG,
        endpoint=endpoint,
        reward=rejecting_reward,
    )
    config = load_config_text(text, env={})
    conversations = gsm8k_messages(replay_store, 2)
    app = create_app(config, predictor=steering())
    async with running(app) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
            seq = await client.chat.completions.with_raw_response.create(
                model="seq", messages=conversations[1]
            )
            climb = await client.chat.completions.with_raw_response.create(
                model="climb", messages=conversations[1]
            )
            await client.chat.completions.create(model="judged", messages=conversations[1])
    assert seq.headers["x-adaptive-n"] == "3"  # never accepted: three rounds of one, the cap
    assert climb.headers["x-adaptive-arm"] == "gpt-4"
    spans = received.spans
    requests = [s for s in spans if s["name"] == "POST /v1/chat/completions"]
    seq_request = next(s for s in requests if s["attributes"]["adaptive.policy"] == "seq")
    rounds = [s for s in _children(spans, seq_request) if s["name"] == "sequential round"]
    assert [r["attributes"]["adaptive.round"] for r in rounds] == [1, 2, 3]
    assert all(r["attributes"]["adaptive.n"] == 1 for r in rounds)
    assert all(r["attributes"]["adaptive.policy"] == "seq" for r in rounds)
    assert [r["attributes"].get("adaptive.stopped_by") for r in rounds] == [None, None, "cap"]
    for r in rounds:  # each round: its sample's upstream call, then the verifier's call
        names = sorted(c["name"] for c in _children(spans, r))
        assert names == ["rerank reward", "upstream pool"]
    reward = next(c for c in _children(spans, rounds[0]) if c["name"] == "rerank reward")
    assert reward["attributes"]["adaptive.candidates"] == 1
    assert reward["attributes"]["adaptive.rerank_failed"] is False

    climb_request = next(s for s in requests if s["attributes"]["adaptive.policy"] == "climb")
    [cascade] = _children(spans, climb_request)
    assert cascade["name"] == "cascade"
    assert cascade["attributes"]["adaptive.escalated"] is True
    assert cascade["attributes"]["adaptive.arm"] == "gpt-4"
    stages = sorted(
        _children(spans, cascade), key=lambda s: s["attributes"]["adaptive.stage_index"]
    )
    assert [s["name"] for s in stages] == ["cascade stage mixtral", "cascade stage gpt-4"]
    assert [s["attributes"]["adaptive.n"] for s in stages] == [1, 1]
    assert stages[1]["attributes"]["adaptive.escalated"] is True
    assert "adaptive.escalated" not in stages[0]["attributes"]
    assert [c["name"] for c in _children(spans, stages[0])] == ["upstream mixtral"]
    assert [c["name"] for c in _children(spans, stages[1])] == ["upstream gpt-4"]

    judged_request = next(s for s in requests if s["attributes"]["adaptive.policy"] == "judged")
    judged = {s["name"]: s for s in _children(spans, judged_request)}
    assert set(judged) == {"upstream pool", "rerank judge"}
    assert judged["rerank judge"]["attributes"]["adaptive.candidates"] == 2
    # The judge's own call is the reranker span's child.
    assert [c["name"] for c in _children(spans, judged["rerank judge"])] == ["upstream mixtral"]
