"""Best-of-k through the live proxy with every reranker, sample/judge failures, keep-alive, and
batch allocation, seen through the official OpenAI SDK against a scripted upstream.

The scripted upstream (``CandidateUpstream``, below) answers the sampler model with four distinct
candidates, the judge model with ``{"best_index": 3}``, and ``/reward`` with fixed scores. Markers
in the conversation steer it: ``[fail-one]`` fails one of the parallel samples (also on retry),
``[fail-all]`` fails every sample (500), ``[bad-request]`` / ``[rate-limited]`` reject every
sample (400 / 429), ``[ignores-n]`` answers one choice whatever ``n`` asks, ``[slow]`` delays
samples, ``[judge-500]`` / ``[judge-nonsense]`` / ``[reward-500]`` break the reranker.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from openai import AsyncOpenAI

from proxy.config.schema import Config
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from tests.servers import running

# Answers 8, 7, 9, 7: vote's majority is 7 (candidates 1 and 3), never the first candidate.
CANDIDATES = (
    "Adding them gives 8. The answer is 8",
    "3 + 4 = 7, so the answer is 7",
    "Hmm, maybe 9. The answer is 9",
    "Counting up from 3 four times: #### 7",
)
SAMPLE_PROMPT_TOKENS, TOKENS_PER_CANDIDATE = 20, 5
JUDGE_USAGE = {"prompt_tokens": 100, "completion_tokens": 3, "total_tokens": 103}
JUDGE_BEST = 3  # 1-based, as the judge prompt numbers candidates
REWARD_SCORES = (0.1, 0.3, 0.2, 0.9)
PARALLEL_N = 3
SLOW_S = 0.5

# Expected top-two candidates (indexes into CANDIDATES) per reranker.
TOP_TWO = {"judge": (2, 0), "reward": (3, 1), "vote": (1, 3), "first": (0, 1)}


@dataclass
class CandidateUpstream:
    """An OpenAI-compatible sampler + judge + reward endpoint with distinct scripted answers."""

    chats: list[dict[str, Any]] = field(default_factory=list)
    rewards: list[dict[str, Any]] = field(default_factory=list)
    arrivals: dict[str, int] = field(default_factory=dict)

    def app(self) -> web.Application:
        """The aiohttp application serving ``/v1/chat/completions`` and ``/reward``."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/reward", self._reward)
        return app

    def judge_calls(self) -> list[dict[str, Any]]:
        """Bodies the judge model received."""
        return [b for b in self.chats if b["model"] == "judge-model"]

    def sample_calls(self, marker: str) -> list[dict[str, Any]]:
        """Bodies the sampler received for conversations containing ``marker``."""
        return [b for b in self.chats if b["model"] == "sampler-model" and marker in _text(b)]

    async def _chat(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.chats.append(body)
        if body["model"] == "judge-model":
            return self._judge(body)
        text = _text(body)
        arrival = self.arrivals.get(text, 0)
        self.arrivals[text] = arrival + 1
        if "[fail-all]" in text or (
            "[fail-one]" in text and (arrival == 0 or arrival >= PARALLEL_N)
        ):
            # Arrival 0 fails, and so does every request after the first n: the retries of the
            # failed sample, whatever order the concurrent requests came in.
            return web.json_response({"error": {"message": "sampler broke"}}, status=500)
        if "[bad-request]" in text:
            error = {
                "message": "max_tokens is too large",
                "type": "invalid_request_error",
                "param": "max_tokens",
                "code": None,
            }
            return web.json_response({"error": error}, status=400)
        if "[rate-limited]" in text:
            error = {"message": "slow down", "type": "rate_limit_error"}
            return web.json_response({"error": error}, status=429, headers={"Retry-After": "0"})
        if "[slow]" in text:
            await asyncio.sleep(SLOW_S)
        n = 1 if "[ignores-n]" in text else int(body.get("n") or 1)
        picks = [k % len(CANDIDATES) for k in (range(n) if n > 1 else [arrival])]
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": CANDIDATES[k]},
                "finish_reason": "stop",
            }
            for i, k in enumerate(picks)
        ]
        completion_tokens = TOKENS_PER_CANDIDATE * len(choices)
        return web.json_response(
            {
                "id": "chatcmpl-sampler",
                "object": "chat.completion",
                "created": 1,
                "model": "sampler-model",
                "choices": choices,
                "usage": {
                    "prompt_tokens": SAMPLE_PROMPT_TOKENS,
                    "completion_tokens": completion_tokens,
                    "total_tokens": SAMPLE_PROMPT_TOKENS + completion_tokens,
                },
            }
        )

    def _judge(self, body: dict[str, Any]) -> web.Response:
        text = _text(body)
        if "[judge-500]" in text:
            return web.json_response({"error": {"message": "judge broke"}}, status=500)
        content = (
            "I like candidate banana"
            if "[judge-nonsense]" in text
            else (orjson.dumps({"best_index": JUDGE_BEST}).decode())
        )
        return web.json_response(
            {
                "id": "chatcmpl-judge",
                "object": "chat.completion",
                "created": 1,
                "model": "judge-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": JUDGE_USAGE,
            }
        )

    async def _reward(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.rewards.append(body)
        if "[reward-500]" in body["query"]:
            return web.json_response({"error": "reward model down"}, status=500)
        return web.json_response({"scores": list(REWARD_SCORES[: len(body["candidates"])])})


def _text(body: dict[str, Any]) -> str:
    return orjson.dumps(body["messages"]).decode()


def make_config(fake_url: str) -> Config:
    """Sampler/judge upstreams on the fake; one best-of-4 policy per reranker, plus failures."""
    upstream = {
        "base_url": f"{fake_url}/v1",
        "price_in_per_mtok_usd": 1.0,
        "price_out_per_mtok_usd": 2.0,
        "retries": 1,
        "retry_backoff_s": 0.01,
    }
    bok = {"type": "best_of_k", "upstream": "sampler", "n_min": 4, "n_max": 4, "lambda": 0.01}
    return Config.model_validate(
        {
            "server": {"reload": False, "keepalive_interval_s": 0.1},
            "upstreams": {
                "sampler": {**upstream, "model": "sampler-model"},
                "judge": {**upstream, "model": "judge-model", "retries": 0},
            },
            "policies": {
                "bok-judge": {**bok, "reranker": {"type": "judge", "upstream": "judge"}},
                "bok-reward": {
                    **bok,
                    "reranker": {"type": "reward", "url": f"{fake_url}/reward"},
                },
                "bok-vote": {**bok, "reranker": {"type": "vote"}},
                "bok-first": {**bok, "reranker": {"type": "first"}},
                "bok-parallel": {
                    **bok,
                    "n_min": PARALLEL_N,
                    "n_max": PARALLEL_N,
                    "use_upstream_n": False,
                    "reranker": {"type": "first"},
                },
                "bok-adaptive": {
                    "type": "best_of_k",
                    "upstream": "sampler",
                    "n_min": 1,
                    "n_max": 6,
                    "lambda": 0.01,
                    "reranker": {"type": "vote"},
                },
                "plain": {"type": "passthrough", "upstream": "sampler"},
            },
        }
    )


@dataclass
class Stack:
    """The proxy in front of the fake, and an SDK client for it."""

    fake: CandidateUpstream
    url: str
    client: AsyncOpenAI


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    fake = CandidateUpstream()
    predictor = HashPredictor(
        {
            "easy prompt": {"p_weak": 0.9},
            "medium prompt": {"p_weak": 0.5},
            "hard prompt": {"p_weak": 0.2},
        }
    )
    async with running(fake.app()) as fake_url:
        app = create_app(make_config(fake_url), predictor=predictor)
        async with (
            running(app) as url,
            AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
        ):
            yield Stack(fake, url, client)


def conversation(marker: str = "") -> list[Any]:
    """A multi-turn conversation: the judge must see all of it."""
    return [
        {"role": "system", "content": "You are a careful calculator."},
        {"role": "user", "content": f"What is 3 + 4? {marker}".strip()},
        {"role": "assistant", "content": "Do you want the working too?"},
        {"role": "user", "content": "Just the final answer please."},
    ]


def expected_usage(reranker: str) -> tuple[int, int]:
    """(prompt, completion) tokens: one n=4 sample call plus the judge call for ``judge``."""
    prompt, completion = SAMPLE_PROMPT_TOKENS, TOKENS_PER_CANDIDATE * len(CANDIDATES)
    if reranker == "judge":
        prompt += JUDGE_USAGE["prompt_tokens"]
        completion += JUDGE_USAGE["completion_tokens"]
    return prompt, completion


async def metrics_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        return await response.text()


@pytest.mark.parametrize("reranker", ["judge", "reward", "vote", "first"])
async def test_reranker_picks_the_winner_and_n2_returns_the_top_two(
    stack: Stack, reranker: str
) -> None:
    raw = await stack.client.chat.completions.with_raw_response.create(
        model=f"bok-{reranker}", messages=conversation(), n=2
    )
    out = raw.parse()
    assert raw.headers["x-adaptive-n"] == "4"
    assert [c.index for c in out.choices] == [0, 1]
    assert [c.message.content for c in out.choices] == [CANDIDATES[i] for i in TOP_TWO[reranker]]
    adaptive = (out.model_extra or {})["adaptive"]
    assert adaptive["reranker"] == reranker and adaptive["n"] == 4
    assert adaptive["rerank_failed"] is False
    assert adaptive["winner"] == TOP_TWO[reranker][0]
    assert [c["index"] for c in adaptive["candidates"]] == [0, 1, 2, 3]
    if reranker == "reward":
        assert [c["score"] for c in adaptive["candidates"]] == list(REWARD_SCORES)
        assert stack.fake.rewards[0]["candidates"] == list(CANDIDATES)
    if reranker == "vote":
        assert [c["score"] for c in adaptive["candidates"]] == [0.25, 0.5, 0.25, 0.5]
    assert adaptive["cost_usd"] > 0 and adaptive["rerank_latency_ms"] >= 0
    assert out.usage is not None
    prompt, completion = expected_usage(reranker)
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (prompt, completion)
    assert out.usage.total_tokens == prompt + completion
    # The upstream supports n: one sampling call carrying n=4.
    (sample_call,) = stack.fake.sample_calls("What is 3 + 4?")
    assert sample_call["n"] == 4 and sample_call["temperature"] == 0.7


@pytest.mark.parametrize("reranker", ["judge", "reward", "vote", "first"])
async def test_streaming_sends_the_chosen_candidates(stack: Stack, reranker: str) -> None:
    stream = await stack.client.chat.completions.create(
        model=f"bok-{reranker}",
        messages=conversation(),
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts: dict[int, str] = {}
    chunks = [c async for c in stream]
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: CANDIDATES[TOP_TWO[reranker][0]], 1: CANDIDATES[TOP_TWO[reranker][1]]}
    assert (chunks[0].model_extra or {})["adaptive"]["reranker"] == reranker
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == expected_usage(reranker)


async def test_judge_sees_the_whole_conversation_and_every_candidate(stack: Stack) -> None:
    await stack.client.chat.completions.create(
        model="bok-judge", messages=conversation(), temperature=0.2
    )
    (sample_call,) = stack.fake.sample_calls("What is 3 + 4?")
    assert sample_call["temperature"] == 0.2  # the client's sampling parameters win
    (call,) = stack.fake.judge_calls()
    assert call["response_format"]["type"] == "json_schema"  # structured output requested
    prompt = "\n".join(m["content"] for m in call["messages"])
    for message in conversation():
        assert message["content"] in prompt
    for i, candidate in enumerate(CANDIDATES, 1):
        assert f"[Candidate {i}]\n{candidate}" in prompt


async def test_a_null_sampling_parameter_takes_the_policys_own(stack: Stack) -> None:
    await stack.client.chat.completions.create(
        model="bok-first", messages=conversation("[null]"), extra_body={"temperature": None}
    )
    (sample_call,) = stack.fake.sample_calls("[null]")
    assert sample_call["temperature"] == 0.7


@pytest.mark.parametrize(
    ("reranker", "marker"),
    [("judge", "[judge-500]"), ("judge", "[judge-nonsense]"), ("reward", "[reward-500]")],
)
async def test_reranker_failure_lets_the_first_sample_win_and_is_counted(
    stack: Stack, reranker: str, marker: str
) -> None:
    out = await stack.client.chat.completions.create(
        model=f"bok-{reranker}", messages=conversation(marker)
    )
    assert out.choices[0].message.content == CANDIDATES[0]
    adaptive = (out.model_extra or {})["adaptive"]
    assert adaptive["rerank_failed"] is True and adaptive["winner"] == 0
    counter = f'adaptive_rerank_failures_total{{reranker="{reranker}"}} 1.0'
    assert counter in await metrics_text(stack.url)


async def test_one_failed_sample_is_dropped(stack: Stack) -> None:
    out = await stack.client.chat.completions.create(
        model="bok-parallel", messages=conversation("[fail-one]")
    )
    adaptive = (out.model_extra or {})["adaptive"]
    assert adaptive["n"] == PARALLEL_N - 1 and adaptive["n_requested"] == PARALLEL_N
    assert adaptive["samples_failed"] == 1
    assert len(adaptive["candidates"]) == PARALLEL_N - 1
    # n parallel requests without `n`, plus one retry of the failed sample.
    calls = stack.fake.sample_calls("[fail-one]")
    assert len(calls) == PARALLEL_N + 1 and all("n" not in c for c in calls)
    assert out.usage is not None
    assert out.usage.completion_tokens == TOKENS_PER_CANDIDATE * (PARALLEL_N - 1)
    assert out.choices[0].message.content in CANDIDATES


async def test_fewer_samples_than_the_choices_asked_for_fail_the_request(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adaptive_proxy.access")
    # Two of three samples arrive: enough for n=2 (the reranked best two) ...
    out = await stack.client.chat.completions.create(
        model="bok-parallel", messages=conversation("[fail-one] two"), n=2
    )
    assert [c.index for c in out.choices] == [0, 1]
    assert (out.model_extra or {})["adaptive"]["samples_failed"] == 1
    # ... but never a silent answer with fewer choices than n: OpenAI's n is a promise.
    with pytest.raises(openai.InternalServerError) as caught:
        await stack.client.chat.completions.create(
            model="bok-parallel", messages=conversation("[fail-one] three"), n=PARALLEL_N
        )
    assert caught.value.status_code == 502
    assert f"2 of {PARALLEL_N} samples arrived" in caught.value.message
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name.endswith(".access")]
    assert [(line["status"], line["choices"]) for line in lines] == [(200, 2), (502, None)]
    stream = await stack.client.chat.completions.create(
        model="bok-parallel",
        messages=conversation("[fail-one] streamed"),
        n=PARALLEL_N,
        stream=True,
    )
    with pytest.raises(openai.APIError, match="samples arrived"):
        async for _ in stream:
            pass
    await stream.close()


async def test_an_upstream_ignoring_n_is_topped_up_with_parallel_samples(stack: Stack) -> None:
    out = await stack.client.chat.completions.create(
        model="bok-vote", messages=conversation("[ignores-n]")
    )
    adaptive = (out.model_extra or {})["adaptive"]
    assert adaptive["n"] == 4 and adaptive["samples_failed"] == 0
    calls = stack.fake.sample_calls("[ignores-n]")
    assert [c.get("n") for c in calls] == [4, None, None, None]
    assert out.choices[0].message.content == CANDIDATES[TOP_TWO["vote"][0]]
    assert out.usage is not None
    assert out.usage.prompt_tokens == 4 * SAMPLE_PROMPT_TOKENS


async def test_all_samples_failing_is_a_502(stack: Stack) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await stack.client.chat.completions.create(
            model="bok-parallel", messages=conversation("[fail-all]")
        )
    assert caught.value.status_code == 502
    assert f"all {PARALLEL_N} samples failed" in caught.value.message


async def test_samples_rejected_by_the_upstream_keep_the_upstream_status(stack: Stack) -> None:
    # A client error is not a server error: 400 passes through (the SDK does not retry it)...
    with pytest.raises(openai.BadRequestError) as bad:
        await stack.client.chat.completions.create(
            model="bok-parallel", messages=conversation("[bad-request]")
        )
    assert bad.value.status_code == 400 and "max_tokens is too large" in bad.value.message
    assert len(stack.fake.sample_calls("[bad-request]")) == PARALLEL_N  # 4xx is not retried
    # ... and so does a rate limit, which the client should back off from.
    with pytest.raises(openai.RateLimitError) as limited:
        await stack.client.chat.completions.create(
            model="bok-parallel", messages=conversation("[rate-limited]")
        )
    assert limited.value.status_code == 429


async def test_streaming_all_samples_failing_sends_an_error_event_then_done(
    stack: Stack,
) -> None:
    body = {"model": "bok-parallel", "messages": conversation("[fail-all]"), "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.url}/v1/chat/completions", json=body) as response,
    ):
        raw = await response.text()
    events = [e for e in raw.split("\n\n") if e.startswith("data: ")]
    error = orjson.loads(events[-2].removeprefix("data: "))["error"]
    assert error["code"] is not None or error["type"]
    assert f"all {PARALLEL_N} samples failed" in error["message"]
    assert events[-1] == "data: [DONE]"
    stream = await stack.client.chat.completions.create(
        model="bok-parallel", messages=conversation("[fail-all]"), stream=True
    )
    with pytest.raises(openai.APIError, match="samples failed"):
        async for _ in stream:
            pass
    await stream.close()


async def test_streaming_sends_keepalives_while_sampling(stack: Stack) -> None:
    body = {"model": "bok-first", "messages": conversation("[slow]"), "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{stack.url}/v1/chat/completions", json=body) as response,
    ):
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = await response.text()
    first_data = raw.index("data: ")
    assert raw[:first_data].count(": keep-alive\n\n") >= 1
    assert raw[:first_data].replace(": keep-alive\n\n", "") == ""
    stream = await stack.client.chat.completions.create(
        model="bok-first", messages=conversation("[slow]"), stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == CANDIDATES[0]


async def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return response.status, await response.json()


async def test_allocate_plans_the_batch_in_request_order(stack: Stack) -> None:
    prompts = ["easy prompt", "hard prompt", "medium prompt"]
    requests = [{"messages": [{"role": "user", "content": p}]} for p in prompts]
    url = f"{stack.url}/v1/adaptive/allocate"
    status, plan = await post(url, {"model": "bok-adaptive", "budget": 9, "requests": requests})
    assert status == 200, plan
    allocations = plan["allocations"]
    assert [a["p"] for a in allocations] == [0.9, 0.2, 0.5]  # request order
    ns = [a["n"] for a in allocations]
    assert sum(ns) == plan["total_n"] <= 9 and all(1 <= n <= 6 for n in ns)
    # Brute force over every allocation within the budget: greedy is exact (concave rewards).
    ps = (0.9, 0.2, 0.5)

    def total(alloc: tuple[int, ...]) -> float:
        return sum(1 - (1 - p) ** n for p, n in zip(ps, alloc, strict=True))

    best = max((a for a in itertools.product(range(1, 7), repeat=3) if sum(a) <= 9), key=total)
    assert total(tuple(ns)) == pytest.approx(total(best))
    assert ns == [2, 4, 3]  # the hard prompt gets the most, the easy one the fewest
    assert allocations[1]["gain"] == pytest.approx((1 - 0.8**4) - 0.2)
    status, error = await post(url, {"model": "bok-adaptive", "budget": 2, "requests": requests})
    assert status == 400 and error["error"]["param"] == "budget"
    status, error = await post(url, {"model": "plain", "budget": 9, "requests": requests})
    assert status == 400 and error["error"]["param"] == "model"
    status, error = await post(url, {"model": "nope", "budget": 9, "requests": requests})
    assert status == 404 and error["error"]["param"] == "model"
