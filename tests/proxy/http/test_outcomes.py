"""The outcome log through real requests: the OpenAI SDK, the proxy, the replay upstream, and the
outcome store as a real SQLite file or a real redis-server (read back by a store of its own)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from openai import AsyncOpenAI

from proxy.config.schema import load_config_text
from proxy.decide.prediction import HashPredictor, Predictor
from proxy.execute.rerank_text import extract_answer
from proxy.http.app import create_app
from proxy.http.state import LEARNING
from proxy.learn.learner import LearnerSettings
from proxy.learn.records import CascadeEvidence, RouteEvidence, SequentialEvidence
from proxy.learn.score import PromotionRule
from proxy.learn.store import OutcomeStore
from proxy.learn.wiring import build_learner
from recorded_data.records import Record
from replay.store import ReplayStore
from tests.proxy.learn.builders import redis_store, sqlite_store
from tests.redis_server import RedisServer
from tests.replay_helpers import cheap_answers, checked_gsm8k, replay_upstreams
from tests.servers import running

CONFIG = """
server: {{reload: false, access_log: {{include_messages: {include_messages}}}}}
upstreams:
{upstreams}
policies:
  router: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.5, learn: true}}
  plain: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.5}}
  casc:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: checker}}, {{upstream: gpt-4}}]
    escalate: {{threshold: 0.5}}
    learn: true
  seq:
    type: best_of_k
    upstream: pool
    n_max: 8
    predictor_output: p_weak
    reranker: {{type: vote}}
    sequential: {{first_n: 2, step_n: 1, stop: {{kind: vote, confidence: 0.9}}}}
    learn: true
{store}
"""


def config_text(url: str, store: str, *, include_messages: bool = False) -> str:
    """The test policy file on the replay upstream at ``url`` with a store section."""
    return CONFIG.format(
        upstreams=replay_upstreams(url, pool=True),
        store=store,
        include_messages=str(include_messages).lower(),
    )


@pytest.fixture(scope="module")
def disagreeing(replay_store: ReplayStore) -> Record:
    """A GSM8K question whose two cheap answers differ (the cascade escalates)."""
    return next(
        r
        for r in checked_gsm8k(replay_store)
        if cheap_answers(r)[0] is not None
        and cheap_answers(r)[0] != cheap_answers(r)[1]
        and extract_answer(r.responses["strong"]) is not None
    )


@dataclass
class Proxy:
    url: str
    app: web.Application
    client: AsyncOpenAI

    async def flush(self) -> None:
        """Wait until the outcome log has written what it queued."""
        runtime = self.app[LEARNING].runtime
        assert runtime is not None
        await runtime.log.flush()

    async def chat(self, model: str, messages: list[dict[str, Any]], rid: str) -> Any:
        """One chat completion with the request id ``rid``; the raw response."""
        return await self.client.chat.completions.with_raw_response.create(
            model=model, messages=list[Any](messages), extra_headers={"x-request-id": rid}
        )


@asynccontextmanager
async def proxy(text: str, predictor: Predictor | None = None) -> AsyncIterator[Proxy]:
    """A started proxy for the policy file ``text`` with an SDK client."""
    config = load_config_text(text, env={})
    app = create_app(config, predictor=predictor or HashPredictor(), warn_if_open=False)
    async with running(app) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
            yield Proxy(url, app, client)


@asynccontextmanager
async def store_of(kind: str, tmp_path: Path) -> AsyncIterator[tuple[str, OutcomeStore]]:
    """The YAML that puts the outcome store in ``kind``, and a reader of that store."""
    if kind == "sqlite":
        path = tmp_path / "outcomes.sqlite3"
        reader: OutcomeStore = sqlite_store(path)
        try:
            yield f'learning: {{store: "{path}"}}', reader
        finally:
            await reader.aclose()
        return
    server = RedisServer()
    server.start()
    reader = redis_store(server.url)
    try:
        # No learning.store: with cache.redis_url the log is the shared Redis Stream.
        yield f'cache: {{redis_url: "{server.url}"}}', reader
    finally:
        await reader.aclose()
        server.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_each_request_of_a_learning_policy_is_logged_with_what_the_predictor_saw(
    kind: str, tmp_path: Path, replay_base_url: str, onnx_predictor: Any, disagreeing: Record
) -> None:
    messages = [dict(m) for m in disagreeing.messages]
    async with store_of(kind, tmp_path) as (yaml, reader):
        async with proxy(config_text(replay_base_url, yaml), onnx_predictor) as p:
            routed = await p.chat("router", messages, "r-route")
            plain = await p.chat("plain", messages, "r-plain")
            await p.flush()
        assert routed.headers["x-request-id"] == "r-route"
        assert plain.headers["x-request-id"] == "r-plain"
        adaptive = (routed.parse().model_extra or {})["adaptive"]
        found = await reader.get("r-route")
        assert found.status == "found" and found.record is not None
        record = found.record
        assert (record.policy, record.decision.arm) == ("router", routed.headers["x-adaptive-arm"])
        assert record.policy_version == adaptive["policy_version"]
        # The shipped prior serves until a head is promoted; its manifest names the version.
        assert record.model_version == "shipped-onnx-2.0.0"
        # No head is promoted: the predictions the decision used are the predictor's own.
        assert record.predictions == pytest.approx(adaptive["predictions"], abs=1e-9)
        embedding = record.embedding()
        assert embedding is not None and embedding.shape == (384,)
        # The float16 embedding is the one the predictor computes for this prompt.
        (_, expected), *_ = await onnx_predictor.predict_embedded([messages])
        assert np.allclose(embedding, expected, atol=2e-3)
        assert record.evidence == RouteEvidence(arm=record.decision.arm)
        assert record.usage.cost_usd == pytest.approx(adaptive["cost_usd"])
        assert record.usage.prompt_tokens > 0 and record.usage.completion_tokens > 0
        assert record.messages is None  # the text is never logged unless asked
        # A policy without learn: true is not logged.
        assert (await reader.get("r-plain")).status == "missing"


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_an_escalated_cascade_and_sequential_rounds_give_free_labels(
    kind: str, tmp_path: Path, replay_base_url: str, disagreeing: Record
) -> None:
    messages = [dict(m) for m in disagreeing.messages]
    async with store_of(kind, tmp_path) as (yaml, reader):
        async with proxy(config_text(replay_base_url, yaml)) as p:
            cascade = await p.chat("casc", messages, "r-casc")
            sequential = await p.chat("seq", messages, "r-seq")
            await p.flush()
        assert cascade.headers["x-adaptive-arm"] == "gpt-4"
        found = await reader.get("r-casc")
        assert found.record is not None
        evidence = found.record.evidence
        assert isinstance(evidence, CascadeEvidence) and evidence.escalated
        assert [s.name for s in evidence.stages] == ["mixtral", "checker", "gpt-4"]
        assert [s.answer for s in evidence.stages] == [
            extract_answer(disagreeing.responses[a]) for a in ("weak", "6b_finetuning", "strong")
        ]
        assert evidence.agreement is False
        assert found.record.decision.arm == "gpt-4"  # the stage that answered
        (label,) = found.labels
        cheap_right = evidence.stages[0].answer == evidence.stages[-1].answer
        assert (label.kind, label.source) == ("free", "cascade:agreement")
        assert label.arm_rewards == {"mixtral": 1.0 if cheap_right else 0.0}

        adaptive = (sequential.parse().model_extra or {})["adaptive"]
        found = await reader.get("r-seq")
        assert found.record is not None
        rounds = found.record.evidence
        assert isinstance(rounds, SequentialEvidence)
        assert (rounds.rounds, rounds.stopped_by) == (adaptive["rounds"], adaptive["stopped_by"])
        assert [s.answer for s in rounds.samples] == [c["answer"] for c in adaptive["candidates"]]
        (label,) = found.labels
        assert (label.kind, label.source) == ("free", "sequential")
        assert label.sample_success is not None
        agree = sum(s.answer == rounds.settled_answer for s in rounds.samples)
        assert (label.sample_success.successes, label.sample_success.samples) == (
            agree,
            adaptive["samples_drawn"],
        )
        totals = await reader.label_totals("seq")
        assert totals == {"free": 1, "explored": 0, "feedback": 0}


async def test_an_escalated_cascade_that_streams_its_answer_still_gives_a_free_label(
    tmp_path: Path, replay_base_url: str, disagreeing: Record
) -> None:
    messages = [dict(m) for m in disagreeing.messages]
    async with store_of("sqlite", tmp_path) as (yaml, reader):
        async with proxy(config_text(replay_base_url, yaml)) as p:
            stream = await p.client.chat.completions.create(
                model="casc",
                messages=list[Any](messages),
                stream=True,
                extra_headers={"x-request-id": "r-casc-stream"},
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            await p.flush()
        found = await reader.get("r-casc-stream")
    assert found.record is not None and found.record.decision.arm == "gpt-4"
    evidence = found.record.evidence
    assert isinstance(evidence, CascadeEvidence) and evidence.escalated
    # The streamed answer's extracted answer is kept (the text itself is not logged).
    assert evidence.stages[-1].answer == extract_answer(text)
    assert evidence.stages[-1].answer == extract_answer(disagreeing.responses["strong"])
    assert found.record.messages is None
    (label,) = found.labels
    cheap_right = evidence.stages[0].answer == evidence.stages[-1].answer
    assert (label.kind, label.source) == ("free", "cascade:agreement")
    assert label.arm_rewards == {"mixtral": 1.0 if cheap_right else 0.0}


async def test_the_conversation_is_logged_only_with_include_messages(
    tmp_path: Path, replay_base_url: str, disagreeing: Record
) -> None:
    messages = [dict(m) for m in disagreeing.messages]
    path = tmp_path / "outcomes.sqlite3"
    yaml = f'learning: {{store: "{path}"}}'
    async with proxy(config_text(replay_base_url, yaml, include_messages=True)) as p:
        await p.chat("router", messages, "r-with-text")
        await p.flush()
    reader = sqlite_store(path)
    try:
        record = (await reader.get("r-with-text")).record
    finally:
        await reader.aclose()
    assert record is not None and record.messages == messages


async def _metric(session: aiohttp.ClientSession, url: str, prefix: str) -> float:
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


async def test_an_unreachable_store_fails_no_request_and_is_counted(
    tmp_path: Path, replay_base_url: str, caplog: pytest.LogCaptureFixture, disagreeing: Record
) -> None:
    messages = [dict(m) for m in disagreeing.messages]
    server = RedisServer()
    server.start()
    url = server.url
    server.close()  # nothing listens there any more
    yaml = f'learning: {{store: "{url}"}}'
    caplog.set_level(logging.WARNING, logger="proxy.learn")
    async with proxy(config_text(replay_base_url, yaml)) as p, aiohttp.ClientSession() as session:
        for i in range(3):
            raw = await p.chat("router", messages, f"r-down-{i}")
            assert raw.http_response.status_code == 200
        errors = 'adaptive_outcome_store_errors_total{op="write"}'
        for _ in range(600):  # the first write fails at once; a guard against hanging
            if await _metric(session, p.url, errors) >= 1:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("no failed write was counted")
        # A request still queued is found in the queue; any other needs the store: 503.
        async with session.post(
            f"{p.url}/v1/adaptive/feedback", json={"request_id": "r-never", "reward": 1.0}
        ) as response:
            assert response.status == 503
            body = await response.json()
        assert body["error"]["code"] == "outcome_store_unavailable"
    outages = [r for r in caplog.records if "store unavailable" in r.getMessage()]
    assert len(outages) == 1  # one warning per outage, not one per failed write


SWAP_CONFIG = """
server: {{reload: false}}
upstreams:
{upstreams}
policies:
  router: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.5, learn: true}}
cache: {{redis_url: "{redis}"}}
learning: {{poll_s: 0.05, min_labels: 100, refit_every: 100}}
"""


async def test_two_proxies_on_one_redis_swap_to_the_head_learned_from_feedback(
    tmp_path: Path, replay_base_url: str, replay_store: ReplayStore, onnx_predictor: Any
) -> None:
    # Two kinds of prompt the prior knows nothing special about; the cheap arm fails one kind.
    records = replay_store.records()
    gsm8k = [r for r in records if r.dataset == "gsm8k"][:60]
    mtbench = [r for r in records if r.dataset == "mtbench"][:60]
    prompts = [r for pair in zip(gsm8k, mtbench, strict=True) for r in pair]
    server = RedisServer()
    server.start()
    try:
        text = SWAP_CONFIG.format(
            upstreams=replay_upstreams(replay_base_url, checker=False), redis=server.url
        )
        config = load_config_text(text, env={})
        async with (
            proxy(text, onnx_predictor) as a,
            proxy(text, onnx_predictor) as b,
            aiohttp.ClientSession() as session,
        ):
            for i, rec in enumerate(prompts):
                await a.chat("router", [dict(m) for m in rec.messages], f"q{i}")
            # The evaluator scores both arms of every request, through the other replica.
            feedback = [
                {
                    "request_id": f"q{i}",
                    "arm_rewards": {"cheap": float(rec.dataset == "mtbench"), "expensive": 1.0},
                }
                for i, rec in enumerate(prompts)
            ]
            for start in range(0, len(feedback), 50):
                async with session.post(
                    f"{b.url}/v1/adaptive/feedback", json={"feedback": feedback[start : start + 50]}
                ) as response:
                    assert response.status == 202, await response.text()
            await a.flush()
            await b.flush()
            # The learner, as `adaptive-proxy learn` runs it, on the store both replicas share.
            settings = LearnerSettings(
                min_labels=100, refit_every=100, min_train=40, rule=PromotionRule(min_holdout=20)
            )
            setup = build_learner(config, models_dir=tmp_path / "models", settings=settings)
            try:
                (spec,) = setup.specs
                report = await setup.learner.refit(spec)
            finally:
                await setup.store.aclose()
            assert report.status == "promoted", report.reason
            version = report.version
            assert version is not None
            for replica in (a, b):
                for _ in range(600):  # each polls every 0.05 s; a guard against hanging
                    heads = replica.app[LEARNING].runtime.heads  # type: ignore[union-attr]
                    if heads.model_version("router") == version:
                        break
                    await asyncio.sleep(0.05)
                else:
                    pytest.fail(f"{replica.url} never served {version}")
            # Both replicas now decide with the learned head, and log that they did: even for
            # a prompt whose decision under the prior is in the shared decision cache.
            again = [dict(m) for m in prompts[0].messages]
            for replica, rid in ((a, "after-a"), (b, "after-b")):
                raw = await replica.chat("router", again, rid)
                adaptive = (raw.parse().model_extra or {})["adaptive"]
                await replica.flush()
                async with session.get(f"{replica.url}/v1/adaptive/learning") as response:
                    learning = (await response.json())["policies"]["router"]
                assert learning["model_version"] == version
                assert learning["promoted_at"] is not None
                assert learning["labels"]["feedback"] == len(prompts)
                reader = redis_store(server.url)
                try:
                    record = (await reader.get(rid)).record
                finally:
                    await reader.aclose()
                assert record is not None and record.model_version == version
                assert adaptive["cache"] == ("miss" if replica is a else "hit")
                # The record keeps the prior's outputs; the decision used the head's.
                assert adaptive["predictions"]["p_weak"] != pytest.approx(
                    record.predictions["p_weak"], abs=1e-6
                )
    finally:
        server.close()
