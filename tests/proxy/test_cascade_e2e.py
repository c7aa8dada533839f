"""Cascades through the proxy with the OpenAI SDK against the replay upstream (real answers)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openai import APIStatusError, AsyncOpenAI

from proxy.config.schema import Config, load_config, load_config_text
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from proxy.wire.errors import ConfigError
from recorded_data.records import MODEL_STRONG, MODEL_WEAK, Record
from replay.store import ReplayStore
from tests.replay_helpers import cheap_answers, checked_gsm8k, replay_upstreams
from tests.servers import running

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
POLICY = """
upstreams:
{upstreams}
  down: {{base_url: "http://127.0.0.1:9/v1", model: nothing, retries: 0, connect_timeout_s: 1}}
policies:
  casc:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: checker}}, {{upstream: gpt-4}}]
    escalate: {{threshold: 0.5}}
  casc-model:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: checker}}, {{upstream: gpt-4}}]
    escalate: {{model: mixtral-gpt4, threshold: -1.0}}
  casc-budget:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: checker}}, {{upstream: gpt-4}}]
    escalate: {{model: mixtral-gpt4, budget: {{kind: fraction_expensive, target: 0.3}}}}
  casc-cheap-down:
    type: cascade
    stages: [{{upstream: down}}, {{upstream: down}}, {{upstream: gpt-4}}]
  casc-checker-down:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: down}}, {{upstream: gpt-4}}]
  casc-last-down:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: checker}}, {{upstream: down}}]
  casc-all-down:
    type: cascade
    stages: [{{upstream: down}}, {{upstream: down}}]
"""


def make_config(url: str) -> Config:
    return load_config_text(POLICY.format(upstreams=replay_upstreams(url)), env={})


@pytest.fixture(scope="module")
def agreeing(replay_store: ReplayStore) -> Record:
    """A GSM8K question on which Mixtral and the 6B sample give the same answer."""
    return next(
        r
        for r in checked_gsm8k(replay_store)
        if cheap_answers(r)[0] is not None and cheap_answers(r)[0] == cheap_answers(r)[1]
    )


@pytest.fixture(scope="module")
def disagreeing(replay_store: ReplayStore) -> Record:
    """A GSM8K question on which they differ (and GPT-4's answer differs from Mixtral's)."""
    return next(
        r
        for r in checked_gsm8k(replay_store)
        if cheap_answers(r)[0] != cheap_answers(r)[1]
        and r.responses["strong"] != r.responses["weak"]
    )


def msgs(rec: Record) -> list[Any]:
    return [dict(m) for m in rec.messages]


@pytest.fixture
async def proxy_url(replay_base_url: str) -> AsyncIterator[str]:
    predictor = HashPredictor(arms=("weak", "strong"))
    async with running(create_app(make_config(replay_base_url), predictor=predictor)) as url:
        yield url


@pytest.fixture
async def client(proxy_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0) as c:
        yield c


async def test_agreeing_cheap_answers_are_returned_without_escalating(
    client: AsyncOpenAI, agreeing: Record
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="casc", messages=msgs(agreeing)
    )
    completion = raw.parse()
    assert raw.headers["x-adaptive-arm"] == "mixtral"
    assert completion.model == MODEL_WEAK
    assert completion.choices[0].message.content == agreeing.responses["weak"]
    adaptive = (completion.model_extra or {})["adaptive"]
    assert adaptive["escalated"] is False and adaptive["evidence"]["agree"] == 1.0
    assert [s["stage"] for s in adaptive["stages"]] == ["mixtral", "checker", "gpt-4"]
    assert [s["ran"] for s in adaptive["stages"]] == [True, True, False]
    assert adaptive["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in adaptive["stages"][:2]))
    assert completion.usage is not None
    # usage sums both cheap stages: more completion tokens than Mixtral's answer alone.
    assert completion.usage.completion_tokens > len(agreeing.responses["weak"].split()) // 4


async def test_disagreement_escalates_to_the_last_stage(
    client: AsyncOpenAI, disagreeing: Record
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="casc", messages=msgs(disagreeing)
    )
    completion = raw.parse()
    assert raw.headers["x-adaptive-arm"] == "gpt-4"
    assert completion.model == MODEL_STRONG
    assert completion.choices[0].message.content == disagreeing.responses["strong"]
    adaptive = (completion.model_extra or {})["adaptive"]
    assert adaptive["escalated"] is True and adaptive["gain"] == 1.0
    assert adaptive["upstream"] == "gpt-4"  # the upstream that answered, as for every policy
    assert adaptive["stages"][2]["ran"] is True
    assert (
        adaptive["cost_usd"] > adaptive["stages"][0]["cost_usd"] + adaptive["stages"][1]["cost_usd"]
    )


async def test_streaming_buffers_the_cheap_stages_and_streams_the_answering_one(
    client: AsyncOpenAI, agreeing: Record, disagreeing: Record
) -> None:
    for rec, arm, text in (
        (agreeing, "mixtral", agreeing.responses["weak"]),
        (disagreeing, "gpt-4", disagreeing.responses["strong"]),
    ):
        async with client.chat.completions.with_streaming_response.create(
            model="casc",
            messages=msgs(rec),
            stream=True,
            stream_options={"include_usage": True},
        ) as response:
            assert response.headers["x-adaptive-arm"] == arm
            pieces, adaptive, usage = [], None, None
            async for chunk in await response.parse():
                extra = chunk.model_extra or {}
                adaptive = adaptive or extra.get("adaptive")
                if chunk.usage is not None:
                    usage = chunk.usage
                pieces += [c.delta.content or "" for c in chunk.choices]
        assert "".join(pieces) == text
        assert adaptive is not None and adaptive["arm"] == arm
        whole = await client.chat.completions.create(model="casc", messages=msgs(rec))
        assert usage is not None and whole.usage is not None
        # The stream's usage sums every stage, as the plain response's does.
        assert (usage.prompt_tokens, usage.completion_tokens) == (
            whole.usage.prompt_tokens,
            whole.usage.completion_tokens,
        )


async def test_the_escalation_model_reads_evidence_and_prior(
    client: AsyncOpenAI, disagreeing: Record
) -> None:
    completion = await client.chat.completions.create(
        model="casc-model", messages=msgs(disagreeing)
    )
    adaptive = (completion.model_extra or {})["adaptive"]
    assert adaptive["escalator"] == "model"
    assert adaptive["escalated"] is True  # threshold −1: any gain escalates
    assert "prior_gain" in adaptive["evidence"]


async def test_failing_cheap_stages_escalate(client: AsyncOpenAI, agreeing: Record) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="casc-cheap-down", messages=msgs(agreeing)
    )
    adaptive = (raw.parse().model_extra or {})["adaptive"]
    assert raw.headers["x-adaptive-arm"] == "gpt-4"
    assert adaptive["escalation_reason"] == "no_cheap_answer"
    assert [s.get("failed") for s in adaptive["stages"][:2]] == [1, 1]


async def test_a_failing_checker_leaves_one_opinion_which_is_not_agreement(
    client: AsyncOpenAI, agreeing: Record
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="casc-checker-down", messages=msgs(agreeing)
    )
    adaptive = (raw.parse().model_extra or {})["adaptive"]
    assert raw.headers["x-adaptive-arm"] == "gpt-4"
    assert adaptive["evidence"]["no_answer_share"] == 0.5 and adaptive["evidence"]["agree"] == 0.0
    assert adaptive["stages"][1]["failed"] == 1


async def test_a_failing_last_stage_falls_back_to_the_cheap_answer(
    client: AsyncOpenAI, disagreeing: Record, proxy_url: str
) -> None:
    for stream in (False, True):
        raw = await client.chat.completions.with_raw_response.create(
            model="casc-last-down", messages=msgs(disagreeing), stream=stream
        )
        assert raw.headers["x-adaptive-arm"] == "mixtral"
    completion = await client.chat.completions.create(
        model="casc-last-down", messages=msgs(disagreeing)
    )
    adaptive = (completion.model_extra or {})["adaptive"]
    assert adaptive["escalation_failed"] is True
    assert completion.choices[0].message.content == disagreeing.responses["weak"]
    async with aiohttp.ClientSession() as session, session.get(f"{proxy_url}/metrics") as r:
        metrics = await r.text()
    assert 'adaptive_cascade_requests_total{answered_by="mixtral",escalated="false"' in metrics
    # Requests are counted by the stage that answered, as the headers and access log name it.
    assert 'adaptive_requests_total{arm="mixtral",policy="casc-last-down",status="200"}' in metrics
    assert 'arm="cascade"' not in metrics


async def test_every_stage_failing_is_an_honest_502(client: AsyncOpenAI, agreeing: Record) -> None:
    with pytest.raises(APIStatusError) as caught:
        await client.chat.completions.create(model="casc-all-down", messages=msgs(agreeing))
    assert caught.value.status_code == 502


async def test_headers_count_the_samples_every_stage_drew(
    client: AsyncOpenAI, agreeing: Record, disagreeing: Record
) -> None:
    # Two cheap samples; escalating draws a third. JSON and stream say the same.
    for rec, drawn, gain in ((agreeing, 2, "0.0000"), (disagreeing, 3, "1.0000")):
        raw = await client.chat.completions.with_raw_response.create(
            model="casc", messages=msgs(rec)
        )
        adaptive = (raw.parse().model_extra or {})["adaptive"]
        assert raw.headers["x-adaptive-n"] == str(drawn) and adaptive["n"] == drawn
        assert raw.headers["x-adaptive-choices"] == "1" and adaptive["choices"] == 1
        assert raw.headers["x-adaptive-gain"] == gain
        async with client.chat.completions.with_streaming_response.create(
            model="casc", messages=msgs(rec), stream=True
        ) as response:
            assert response.headers["x-adaptive-n"] == str(drawn)
            assert response.headers["x-adaptive-choices"] == "1"
            first = await anext(aiter(await response.parse()))
        assert (first.model_extra or {})["adaptive"]["n"] == drawn


async def test_the_access_log_names_the_stage_that_answered(
    client: AsyncOpenAI,
    agreeing: Record,
    disagreeing: Record,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adaptive_proxy.access")
    for stream in (False, True):
        for rec in (agreeing, disagreeing):
            raw = await client.chat.completions.with_raw_response.create(
                model="casc", messages=msgs(rec), stream=stream
            )
            if stream:
                async for _ in raw.parse():  # type: ignore[union-attr]
                    pass
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith(".access")]
    expected = [("mixtral", "mixtral", 2), ("gpt-4", "gpt-4", 3)] * 2
    assert [(line["arm"], line["upstream"], line["n"]) for line in lines] == expected


async def test_decide_reports_the_plan_and_that_escalation_waits_for_the_answers(
    proxy_url: str, agreeing: Record
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{proxy_url}/v1/adaptive/decide", json={"model": "casc", "messages": msgs(agreeing)}
        ) as r,
    ):
        body = await r.json()
    assert r.status == 200 and body["arm"] == "cascade"
    assert [s["runs"] for s in body["stages"]] == [
        "always",
        "always",
        "if the cheap answers call for it",
    ]
    assert "depends on the cheap stages' answers" in body["escalation"]


async def test_a_budget_steers_the_escalation_rate_from_what_was_escalated(
    client: AsyncOpenAI, proxy_url: str, replay_store: ReplayStore
) -> None:
    questions = [r for r in replay_store.records() if r.dataset == "gsm8k"][:40]
    escalated = []
    for rec in questions:
        completion = await client.chat.completions.create(model="casc-budget", messages=msgs(rec))
        escalated.append(float((completion.model_extra or {})["adaptive"]["escalated"]))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{proxy_url}/v1/adaptive/decide",
            json={"model": "casc-budget", "messages": msgs(questions[0])},
        ) as r,
    ):
        budget = (await r.json())["budget"]
    assert budget["target_kind"] == "fraction_expensive" and budget["window"] >= 16
    # The realised rate is the share escalated over the requests seen at its last update.
    assert any(
        budget["realised"] == pytest.approx(sum(escalated[:k]) / k)
        for k in range(1, len(escalated) + 1)
    )
    # Once λ is solved (from 20 requests on) it prices escalations: fewer than without a price.
    assert budget["lambda"] > 0 and sum(escalated[32:]) < len(escalated[32:])


def test_a_bad_cascade_is_rejected_at_load() -> None:
    base = "upstreams: {a: {base_url: 'http://x/v1', model: a}}\npolicies:\n  c: "
    for section, problem in (
        ("{type: cascade, stages: [{upstream: a}]}", "at least 2"),
        ("{type: cascade, stages: [{upstream: a}, {upstream: a, n: 2}]}", "answers once"),
        (
            "{type: cascade, stages: [{upstream: a}, {upstream: a}], escalate: {model: nope}}",
            "nope",
        ),
    ):
        with pytest.raises(ConfigError, match=problem):
            load_config_text(base + section, env={})


async def test_the_example_policies_answer(
    replay_base_url: str, disagreeing: Record, agreeing: Record
) -> None:
    config = load_config(EXAMPLE, env={"REPLAY_BASE_URL": replay_base_url})
    arms = ("weak", "strong", "6b_finetuning", "175b_finetuning", "175b_verification")
    app = create_app(config, predictor=HashPredictor(arms=arms))
    async with (
        running(app) as url,
        AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="auto-cascade", messages=msgs(disagreeing)
        )
        assert raw.headers["x-adaptive-arm"] == "gpt-4"
        raw = await client.chat.completions.with_raw_response.create(
            model="cascade-175b", messages=msgs(agreeing)
        )
        assert raw.headers["x-adaptive-arm"] in ("gsm8k-175b", "mixtral", "gsm8k-175b-verified")
        completion = await client.chat.completions.create(
            model="sequential-best-of-k", messages=msgs(agreeing)
        )
        adaptive = (completion.model_extra or {})["adaptive"]
        assert adaptive["stopped_by"] in ("vote", "cap", "budget")
        assert 1 <= adaptive["samples_drawn"] <= 8
        raw = await client.chat.completions.with_raw_response.create(
            model="gsm8k-ladder", messages=msgs(agreeing)
        )
        adaptive = (raw.parse().model_extra or {})["adaptive"]
        assert raw.headers["x-adaptive-arm"] in ("6b", "175b", "175b-best-of-100")
        assert adaptive["cost_usd"] > 0
