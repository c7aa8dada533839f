"""Best-of-k through the proxy against the replay upstream's `gsm8k-pool` (real recorded data)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from proxy.config.schema import Config, load_config_text
from proxy.decide.prediction import HashPredictor
from proxy.execute.rerank import extract_answer
from proxy.http.app import create_app
from recorded_data.records import Record
from replay.store import ReplayStore
from tests.replay_helpers import record_by_id as record
from tests.servers import running

POLICY = """
upstreams:
  pool: {{base_url: "{url}", model: gsm8k-pool,
         price_in_per_mtok_usd: 0.6, price_out_per_mtok_usd: 0.6}}
policies:
  bok: {{type: best_of_k, upstream: pool, n_min: 1, n_max: 6, predictor_output: p_weak,
         lambda: 0.01, reranker: {{type: vote}}}}
  bok-parallel: {{type: best_of_k, upstream: pool, n_min: 3, n_max: 3, use_upstream_n: false,
                  predictor_output: p_weak, lambda: 0.01, reranker: {{type: vote}}}}
"""
EASY, HARD = "Janet’s ducks", "A robe takes 2 bolts"


def make_config(url: str) -> Config:
    return load_config_text(POLICY.format(url=url), env={})


def predictor() -> HashPredictor:
    return HashPredictor({EASY: {"p_weak": 0.97}, HARD: {"p_weak": 0.35}})


def msgs(rec: Record) -> list[Any]:
    return [dict(m) for m in rec.messages]


@pytest.fixture
async def proxy_url(replay_base_url: str) -> AsyncIterator[str]:
    async with running(create_app(make_config(replay_base_url), predictor=predictor())) as url:
        yield url


@pytest.fixture
async def client(proxy_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0) as c:
        yield c


async def test_n_adapts_to_predicted_difficulty_and_vote_picks_the_majority(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    easy, hard = record(replay_store, "gsm8k/0"), record(replay_store, "gsm8k/1")
    raw_easy = await client.chat.completions.with_raw_response.create(
        model="bok", messages=msgs(easy)
    )
    raw_hard = await client.chat.completions.with_raw_response.create(
        model="bok", messages=msgs(hard)
    )
    n_easy, n_hard = int(raw_easy.headers["x-adaptive-n"]), int(raw_hard.headers["x-adaptive-n"])
    assert n_easy < n_hard  # more samples where one sample is less likely to succeed
    completion = raw_hard.parse()
    adaptive = (completion.model_extra or {})["adaptive"]
    assert adaptive["reranker"] == "vote" and len(adaptive["candidates"]) == n_hard
    recorded = set(hard.responses.values())
    assert completion.choices[0].message.content in recorded
    votes = Counter(extract_answer(c) for c in recorded)
    winner = extract_answer(completion.choices[0].message.content or "")
    shares = [c["score"] for c in adaptive["candidates"]]
    assert max(shares) == pytest.approx(max(s for s in shares if s is not None))
    assert winner is not None and votes[winner] >= 1
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_client_n_returns_the_top_candidates_and_parallel_sampling(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    rec = record(replay_store, "gsm8k/1")
    out = await client.chat.completions.create(model="bok-parallel", messages=msgs(rec), n=2)
    assert [c.index for c in out.choices] == [0, 1]
    assert (out.model_extra or {})["adaptive"]["n"] == 3


async def test_a_clients_n_is_n_reranked_choices_in_the_json_stream_headers_and_log(
    client: AsyncOpenAI,
    proxy_url: str,
    replay_store: ReplayStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adaptive_proxy.access")
    easy = record(replay_store, "gsm8k/0")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{proxy_url}/v1/adaptive/decide", json={"model": "bok", "messages": msgs(easy)}
        ) as r,
    ):
        decided_k = (await r.json())["n"]
    assert decided_k < 5  # the policy alone would draw fewer samples than the client asks for
    raw = await client.chat.completions.with_raw_response.create(
        model="bok", messages=msgs(easy), n=5
    )
    completion = raw.parse()
    adaptive = (completion.model_extra or {})["adaptive"]
    assert [c.index for c in completion.choices] == [0, 1, 2, 3, 4]
    assert raw.headers["x-adaptive-choices"] == "5" and adaptive["choices"] == 5
    assert raw.headers["x-adaptive-n"] == "5" and adaptive["n"] == 5
    assert raw.headers["x-adaptive-arm"] == adaptive["arm"] == "best_of_5"
    assert len(adaptive["candidates"]) == 5
    # Reranked order: vote ranks a sample by its answer's share, so shares never increase.
    answers = [extract_answer(c.message.content or "") for c in completion.choices]
    shares = [Counter(answers)[a] for a in answers]
    assert shares == sorted(shares, reverse=True)
    assert all(c.message.content in set(easy.responses.values()) for c in completion.choices)

    async with client.chat.completions.with_streaming_response.create(
        model="bok", messages=msgs(easy), n=5, stream=True
    ) as response:
        assert response.headers["x-adaptive-choices"] == "5"
        assert response.headers["x-adaptive-n"] == "5"
        chunks = [c async for c in await response.parse()]
    assert (chunks[0].model_extra or {})["adaptive"]["choices"] == 5
    assert sorted({c.index for chunk in chunks for c in chunk.choices}) == [0, 1, 2, 3, 4]
    finished = [c.index for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finished == [0, 1, 2, 3, 4]
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith(".access")]
    chats = [line for line in lines if line["path"] == "/v1/chat/completions"]
    assert [(line["n"], line["choices"], line["arm"]) for line in chats] == [
        (5, 5, "best_of_5")
    ] * 2


async def test_n_above_the_policys_n_max_is_a_400_naming_n(
    client: AsyncOpenAI, proxy_url: str, replay_store: ReplayStore
) -> None:
    easy = record(replay_store, "gsm8k/0")
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="bok", messages=msgs(easy), n=7, stream=stream
            )
        assert caught.value.param == "n" and "at most 6" in caught.value.message
    body = {"model": "bok", "messages": msgs(easy), "n": 7}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy_url}/v1/adaptive/decide", json=body) as r,
    ):
        assert r.status == 400 and (await r.json())["error"]["param"] == "n"
    body["n"] = 6
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{proxy_url}/v1/adaptive/decide", json=body) as r,
    ):
        decided = await r.json()
    assert (r.status, decided["n"], decided["arm"]) == (200, 6, "best_of_6")


async def test_streaming_sends_the_winner_after_the_choice(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    rec = record(replay_store, "gsm8k/1")
    stream = await client.chat.completions.create(
        model="bok", messages=msgs(rec), stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert (chunks[0].model_extra or {})["adaptive"]["reranker"] == "vote"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text in set(rec.responses.values())
    assert chunks[-1].usage is not None


async def test_allocate_plans_a_batch_budget(proxy_url: str, replay_store: ReplayStore) -> None:
    recs = [record(replay_store, f"gsm8k/{i}") for i in (0, 1, 2)]
    body = {"model": "bok", "budget": 7, "requests": [{"messages": msgs(r)} for r in recs]}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{proxy_url}/v1/adaptive/allocate", json=body) as r,
    ):
        assert r.status == 200, await r.text()
        plan = await r.json()
    ns = [a["n"] for a in plan["allocations"]]
    assert len(ns) == 3 and sum(ns) <= 7 and all(n >= 1 for n in ns)
    assert ns[1] >= ns[0]  # the harder prompt gets at least as many samples
    bad = {"model": "bok", "budget": 1, "requests": body["requests"]}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{proxy_url}/v1/adaptive/allocate", json=bad) as r,
    ):
        assert r.status == 400 and (await r.json())["error"]["param"] == "budget"
