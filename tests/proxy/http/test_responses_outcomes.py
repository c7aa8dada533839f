"""``POST /v1/responses`` under ``learn: true`` policies: the outcome log and exploration, as on
chat completions (the OpenAI SDK, the proxy, the replay upstream, a real SQLite outcome store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.execute.rerank_text import extract_answer
from proxy.http.explore import explorer_of
from proxy.http.state import LEARNING
from proxy.learn.records import CascadeEvidence, RouteEvidence
from recorded_data.records import MODEL_STRONG, MODEL_WEAK, Record
from replay.store import ReplayStore
from tests.proxy.http.test_outcomes import proxy
from tests.proxy.learn.builders import sqlite_store

CONFIG = """
server: {{reload: false}}
upstreams:
  mixtral: {{base_url: "{url}", model: "{weak}", price_in_per_mtok_usd: 0.6,
            price_out_per_mtok_usd: 0.6}}
  checker: {{base_url: "{url}", model: gsm8k-6b-finetuning, price_in_per_mtok_usd: 0.28,
            price_out_per_mtok_usd: 0.28}}
  gpt-4: {{base_url: "{url}", model: "{strong}", price_in_per_mtok_usd: 10,
          price_out_per_mtok_usd: 30}}
policies:
  router: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.5, learn: true}}
  plain: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.5}}
  casc:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: checker}}, {{upstream: gpt-4}}]
    escalate: {{threshold: 0.5}}
    learn: true
  casc-x:  # an answer pattern: exploration can label the pair without a judge
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: gpt-4}}]
    escalate: {{threshold: 0.5}}
    answer_pattern: "(-?[0-9][0-9,]*)"
    learn: true
learning: {{store: "{store}", explore_fraction: {fraction}, explore_budget_usd_per_day: 100}}
"""


def config_text(url: str, store: Path, fraction: float) -> str:
    return CONFIG.format(
        url=url, weak=MODEL_WEAK, strong=MODEL_STRONG, store=store, fraction=fraction
    )


@pytest.fixture(scope="module")
def disagreeing(replay_store: ReplayStore) -> Record:
    """A GSM8K question whose two cheap answers differ (the cascade escalates)."""

    def answer(rec: Record, arm: str) -> str | None:
        return extract_answer(rec.responses[arm]) if arm in rec.responses else None

    return next(
        r
        for r in replay_store.records()
        if r.dataset == "gsm8k"
        and answer(r, "weak") is not None
        and answer(r, "6b_finetuning") not in (None, answer(r, "weak"))
        and answer(r, "strong") is not None
    )


async def test_responses_of_a_learning_policy_are_logged_with_their_evidence(
    tmp_path: Path, replay_base_url: str, disagreeing: Record
) -> None:
    path = tmp_path / "outcomes.sqlite3"
    messages: Any = [dict(m) for m in disagreeing.messages]
    async with proxy(config_text(replay_base_url, path, 0.0)) as p:
        routed = await p.client.responses.with_raw_response.create(
            model="router", input=messages, extra_headers={"x-request-id": "resp-route"}
        )
        await p.client.responses.create(
            model="plain", input=messages, extra_headers={"x-request-id": "resp-plain"}
        )
        stream = await p.client.responses.create(
            model="casc",
            input=messages,
            stream=True,
            extra_headers={"x-request-id": "resp-casc"},
        )
        async for _ in stream:
            pass
        runtime = p.app[LEARNING].runtime
        assert runtime is not None
        await runtime.log.flush()
    reader = sqlite_store(path)
    try:
        route, plain, casc = [
            await reader.get(r) for r in ("resp-route", "resp-plain", "resp-casc")
        ]
    finally:
        await reader.aclose()
    assert route.record is not None
    assert route.record.decision.arm == routed.headers["x-adaptive-arm"]
    assert route.record.evidence == RouteEvidence(arm=route.record.decision.arm)
    assert route.record.usage.cost_usd > 0
    assert plain.status == "missing"  # no learn: true, no record
    assert casc.record is not None and casc.record.decision.arm == "gpt-4"
    evidence = casc.record.evidence
    assert isinstance(evidence, CascadeEvidence) and evidence.escalated
    # The streamed last stage's answer was kept: the escalation is a free label.
    assert evidence.stages[-1].answer == extract_answer(disagreeing.responses["strong"])
    assert [label.source for label in casc.labels] == ["cascade:agreement"]


async def test_a_response_of_a_learning_policy_may_be_explored(
    tmp_path: Path, replay_base_url: str, disagreeing: Record
) -> None:
    path = tmp_path / "outcomes.sqlite3"
    messages: Any = [dict(m) for m in disagreeing.messages]
    async with proxy(config_text(replay_base_url, path, 1.0)) as p:
        answered = await p.client.responses.with_raw_response.create(
            model="casc-x", input=messages, extra_headers={"x-request-id": "resp-explored"}
        )
        explorer = explorer_of(p.app)
        assert explorer is not None
        await explorer.drain()
        runtime = p.app[LEARNING].runtime
        assert runtime is not None
        await runtime.log.flush()
    reader = sqlite_store(path)
    try:
        found = await reader.get("resp-explored")
    finally:
        await reader.aclose()
    assert found.record is not None and found.record.explore is True
    explored = [label for label in found.labels if label.kind == "explored"]
    assert len(explored) == 1
    # The stage not chosen ran in the background; the cheap stage is labelled against the last.
    assert answered.headers["x-adaptive-arm"] in ("mixtral", "gpt-4")
    assert set(explored[0].arm_rewards or {}) == {"mixtral"}
