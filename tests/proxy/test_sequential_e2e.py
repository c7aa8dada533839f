"""Sequential best-of-k through the proxy (OpenAI SDK) against the replay upstream's `gsm8k-pool`.

The pool serves the six recorded real solutions of a GSM8K question; the verifier is a real
HTTP server on an ephemeral port that checks a candidate's final answer against the recorded
ground truth (a cheap, exact checker, as Game of 24's is).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web
from openai import AsyncOpenAI

from proxy.config.schema import Config, load_config_text
from proxy.decide.prediction import HashPredictor
from proxy.execute.rerank_text import extract_answer
from proxy.http.app import create_app
from proxy.wire.errors import ConfigError
from recorded_data.records import Record
from replay.server import LatencyModel, create_replay_app
from replay.store import POOL_ARMS, ReplayStore
from tests.servers import running

POLICY = """
server: {{keepalive_interval_s: 0.02}}
upstreams:
  pool: {{base_url: "{url}", model: gsm8k-pool, supports_n: false,
         price_in_per_mtok_usd: 0.6, price_out_per_mtok_usd: 0.6}}
policies:
  seq-vote:
    type: best_of_k
    upstream: pool
    n_max: 8
    predictor_output: p_weak
    reranker: {{type: vote}}
    sequential: {{first_n: 2, step_n: 1, stop: {{kind: vote, confidence: 0.9}}}}
  seq-verify:
    type: best_of_k
    upstream: pool
    n_max: 8
    predictor_output: p_weak
    reranker: {{type: reward, url: "{verifier}/ok"}}
    sequential: {{first_n: 1, step_n: 1, stop: {{kind: verifier, accept_score: 0.5}}}}
  seq-verify-down:
    type: best_of_k
    upstream: pool
    n_max: 6
    predictor_output: p_weak
    reranker: {{type: reward, url: "{verifier}/down"}}
    sequential: {{first_n: 2, step_n: 2, stop: {{kind: verifier, accept_score: 0.5}}}}
  seq-budget:
    type: best_of_k
    upstream: pool
    n_max: 6
    predictor_output: p_weak
    budget: {{kind: mean_samples, target: 3, window: 100}}
    reranker: {{type: vote}}
    sequential: {{first_n: auto, step_n: 2, stop: {{kind: vote, confidence: 0.9}}}}
"""


def _pool_answers(rec: Record) -> list[str | None]:
    return [extract_answer(rec.responses[a]) for a in POOL_ARMS if a in rec.responses]


def _truth(rec: Record) -> str | None:
    return extract_answer(str(rec.extra["ground_truth"]))


def _gsm8k(store: ReplayStore, keep: Callable[[Record], bool]) -> Record:
    return next(
        r for r in store.records() if r.dataset == "gsm8k" and "ground_truth" in r.extra and keep(r)
    )


@pytest.fixture(scope="module")
def unanimous(replay_store: ReplayStore) -> Record:
    """A question whose six recorded solutions all give one answer."""
    return _gsm8k(replay_store, lambda r: len(set(_pool_answers(r))) == 1)


@pytest.fixture(scope="module")
def mostly_right(replay_store: ReplayStore) -> Record:
    """A question with five right solutions of six (a verifier has work to do)."""
    return _gsm8k(replay_store, lambda r: sum(a == _truth(r) for a in _pool_answers(r)) == 5)


def msgs(rec: Record) -> list[Any]:
    return [dict(m) for m in rec.messages]


@pytest.fixture
async def verifier_url(replay_store: ReplayStore) -> AsyncIterator[str]:
    """``POST /ok`` scores 1 for a candidate with the recorded right answer; ``/down`` fails."""
    truths = {
        str(r.messages[-1]["content"]): _truth(r)
        for r in replay_store.records()
        if r.dataset == "gsm8k" and "ground_truth" in r.extra
    }

    async def ok(request: web.Request) -> web.Response:
        body = await request.json()
        query = body["query"].removeprefix("user: ")
        truth = truths.get(query)
        scores = [float(extract_answer(c) == truth) for c in body["candidates"]]
        return web.json_response({"scores": scores})

    async def down(request: web.Request) -> web.Response:
        return web.json_response({"error": "overloaded"}, status=503)

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/down", down)
    async with running(app) as url:
        yield url


@pytest.fixture
async def slow_replay_url(replay_store: ReplayStore) -> AsyncIterator[str]:
    """The replay upstream with 30 ms to the first token (rounds take visible time)."""
    app = create_replay_app(replay_store, latency=LatencyModel(ttft_ms=30.0))
    async with running(app) as url:
        yield f"{url}/v1"


def make_config(url: str, verifier: str) -> Config:
    return load_config_text(POLICY.format(url=url, verifier=verifier), env={})


@pytest.fixture
async def proxy_url(slow_replay_url: str, verifier_url: str) -> AsyncIterator[str]:
    predictor = HashPredictor(arms=("weak", "strong"))
    config = make_config(slow_replay_url, verifier_url)
    async with running(create_app(config, predictor=predictor)) as url:
        yield url


@pytest.fixture
async def client(proxy_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0) as c:
        yield c


async def test_vote_stops_once_three_samples_agree(client: AsyncOpenAI, unanimous: Record) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="seq-vote", messages=msgs(unanimous)
    )
    completion = raw.parse()
    adaptive = (completion.model_extra or {})["adaptive"]
    # Two agreeing votes give a posterior of 7/8 < 0.9; the third gives 15/16.
    assert (adaptive["stopped_by"], adaptive["samples_drawn"], adaptive["rounds"]) == ("vote", 3, 2)
    assert raw.headers["x-adaptive-n"] == "3"
    assert [c["answer"] for c in adaptive["candidates"]] == [_pool_answers(unanimous)[0]] * 3
    assert completion.choices[0].message.content in unanimous.responses.values()


async def test_the_arm_is_sequential_everywhere_whatever_was_drawn(
    client: AsyncOpenAI, proxy_url: str, unanimous: Record, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adaptive_proxy.access")
    raw = await client.chat.completions.with_raw_response.create(
        model="seq-vote", messages=msgs(unanimous)
    )
    adaptive = (raw.parse().model_extra or {})["adaptive"]
    # Round one drew 2 and the vote stopped at 3: the arm names the method, not either count.
    assert (adaptive["n_requested"], adaptive["samples_drawn"]) == (2, 3)
    assert raw.headers["x-adaptive-arm"] == adaptive["arm"] == "sequential"
    async with client.chat.completions.with_streaming_response.create(
        model="seq-vote", messages=msgs(unanimous), stream=True
    ) as response:
        assert response.headers["x-adaptive-arm"] == "sequential"
        first = await anext(aiter(await response.parse()))
        async for _ in await response.parse():
            pass
    assert (first.model_extra or {})["adaptive"]["arm"] == "sequential"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith(".access")]
    assert [(line["arm"], line["n"]) for line in lines] == [("sequential", 3)] * 2
    async with aiohttp.ClientSession() as session, session.get(f"{proxy_url}/metrics") as r:
        metrics = await r.text()
    assert 'adaptive_requests_total{arm="sequential",policy="seq-vote",status="200"} 2.0' in metrics
    assert "best_of_" not in metrics


async def test_a_clients_n_is_n_choices_and_round_one_draws_at_least_n(
    client: AsyncOpenAI, unanimous: Record, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adaptive_proxy.access")
    raw = await client.chat.completions.with_raw_response.create(
        model="seq-vote", messages=msgs(unanimous), n=4
    )
    completion = raw.parse()
    adaptive = (completion.model_extra or {})["adaptive"]
    # Round one is the client's 4 (not first_n: 2); four agreeing votes settle it.
    assert (adaptive["n_requested"], adaptive["samples_drawn"], adaptive["rounds"]) == (4, 4, 1)
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    assert raw.headers["x-adaptive-choices"] == "4" and adaptive["choices"] == 4
    async with client.chat.completions.with_streaming_response.create(
        model="seq-vote", messages=msgs(unanimous), n=4, stream=True
    ) as response:
        assert response.headers["x-adaptive-choices"] == "4"
        chunks = [c async for c in await response.parse()]
    assert sorted({c.index for chunk in chunks for c in chunk.choices}) == [0, 1, 2, 3]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith(".access")]
    assert [(line["choices"], line["n"]) for line in lines] == [(4, 4)] * 2
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="seq-vote", messages=msgs(unanimous), n=9)
    assert caught.value.param == "n" and "at most 8" in caught.value.message


async def test_verifier_stops_at_the_first_right_sample(
    client: AsyncOpenAI, mostly_right: Record
) -> None:
    completion = await client.chat.completions.create(
        model="seq-verify", messages=msgs(mostly_right)
    )
    adaptive = (completion.model_extra or {})["adaptive"]
    assert adaptive["stopped_by"] == "verifier"
    assert extract_answer(completion.choices[0].message.content or "") == _truth(mostly_right)
    scores = [c["verifier_score"] for c in adaptive["candidates"]]
    assert scores[-1] == 1.0 and all(s == 0.0 for s in scores[:-1])  # stopped at the first 1
    assert adaptive["samples_drawn"] == adaptive["rounds"] == len(scores)


async def test_a_failing_verifier_falls_back_to_vote_and_is_counted(
    client: AsyncOpenAI, unanimous: Record, proxy_url: str
) -> None:
    completion = await client.chat.completions.create(
        model="seq-verify-down", messages=msgs(unanimous)
    )
    adaptive = (completion.model_extra or {})["adaptive"]
    assert adaptive["verifier_failures"] == 1
    assert adaptive["stopped_by"] == "vote" and adaptive["samples_drawn"] == 4
    async with aiohttp.ClientSession() as session, session.get(f"{proxy_url}/metrics") as r:
        metrics = await r.text()
    assert 'adaptive_sequential_verifier_failures_total{policy="seq-verify-down"} 1.0' in metrics
    assert 'adaptive_sequential_stops_total{policy="seq-verify-down",stopped_by="vote"}' in metrics


async def test_streaming_keeps_alive_across_rounds_then_sends_the_winner(
    proxy_url: str, unanimous: Record
) -> None:
    body = {"model": "seq-vote", "messages": msgs(unanimous), "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy_url}/v1/chat/completions", json=body) as r,
    ):
        text = await r.text()
    assert r.status == 200
    assert ": keep-alive" in text.split("data: ", 1)[0]  # rounds take 2 × 30 ms
    assert text.rstrip().endswith("data: [DONE]")

    async with AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="seq-vote", messages=msgs(unanimous), stream=True
        )
        pieces, adaptive = [], None
        async for chunk in stream:
            adaptive = adaptive or (chunk.model_extra or {}).get("adaptive")
            pieces += [c.delta.content or "" for c in chunk.choices]
    assert "".join(pieces) in unanimous.responses.values()
    assert adaptive is not None and adaptive["stopped_by"] == "vote"


async def test_the_budget_counts_samples_drawn(
    client: AsyncOpenAI, proxy_url: str, replay_store: ReplayStore
) -> None:
    # The controller re-solves λ every 16 requests (from 20 on); by then round one shrinks and
    # the stop rule makes the samples drawn differ from round one's size.
    questions = [r for r in replay_store.records() if r.dataset == "gsm8k"][:40]
    drawn, planned = [], []
    for rec in questions:
        completion = await client.chat.completions.create(model="seq-budget", messages=msgs(rec))
        adaptive = (completion.model_extra or {})["adaptive"]
        drawn.append(adaptive["samples_drawn"])
        planned.append(adaptive["n_requested"])
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{proxy_url}/v1/adaptive/decide",
            json={"model": "seq-budget", "messages": msgs(questions[0])},
        ) as r,
    ):
        decided = await r.json()
    realised = decided["budget"]["realised"]
    # The realised rate is the mean of samples drawn over the requests seen at its last update.
    prefixes = [
        k for k in range(1, len(drawn) + 1) if realised == pytest.approx(sum(drawn[:k]) / k)
    ]
    assert prefixes, (realised, drawn)
    assert drawn != planned  # sequential stopping changed what was drawn
    assert decided["sequential"]["stop"]["kind"] == "vote"


def test_a_verifier_stop_needs_a_reward_reranker() -> None:
    section = (
        "upstreams: {a: {base_url: 'http://x/v1', model: a}}\npolicies:\n  s: {type: best_of_k, "
        "upstream: a, sequential: {stop: {kind: verifier, accept_score: 0.5}}}"
    )
    with pytest.raises(ConfigError, match="reward reranker"):
        load_config_text(section, env={})
