"""Tool calls and structured outputs under best-of-k, through the proxy and the openai SDK.

The upstream is the scripted :class:`tests.proxy.fake_upstream.FakeUpstream`: each of a
request's k parallel samples consumes one scripted reply.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from openai import AsyncOpenAI

from proxy.config.schema import Config
from proxy.decide.prediction import HashPredictor
from proxy.execute.candidates import canonical_answer, structured_kind
from proxy.http.app import create_app
from proxy.policies.spec import RerankerConfig
from tests.proxy.fake_upstream import FakeUpstream, Received, Reply, completion
from tests.servers import running

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            },
        },
    }
]
JSON_FORMAT: Any = {"type": "json_object"}
MESSAGES: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]


def tool_reply(arguments: str, name: str = "get_weather") -> Reply:
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
    body = completion("pool-model", None, tool_calls=[call])
    body["choices"][0]["finish_reason"] = "tool_calls"
    return Reply(body=body)


def text_reply(content: str) -> Reply:
    return Reply(body=completion("pool-model", content))


def bok_config(url: str) -> Config:
    three = {
        "type": "best_of_k",
        "upstream": "pool",
        "n_min": 3,
        "n_max": 3,
        "use_upstream_n": False,
        "predictor_output": "p_weak",
        "lambda": 0.01,
    }
    return Config.model_validate(
        {
            "server": {"reload": False},
            "upstreams": {"pool": {"base_url": url, "model": "pool-model", "retries": 0}},
            "policies": {
                "vote": {**three, "reranker": {"type": "vote"}},
                "first": {**three, "reranker": {"type": "first"}},
                "prose-vote": {**three, "reranker": {"type": "vote", "pattern": r"ANSWER: (\d+)"}},
                "sequential": {
                    **three,
                    "n_min": 1,
                    "n_max": 4,
                    "reranker": {"type": "vote"},
                    "sequential": {
                        "first_n": 2,
                        "step_n": 2,
                        "stop": {"kind": "vote", "confidence": 0.9},
                    },
                },
            },
            "predictor": {"type": "hash"},
        }
    )


@asynccontextmanager
async def proxy(
    configure: Callable[[Config], Config] | None = None,
) -> AsyncIterator[tuple[FakeUpstream, AsyncOpenAI]]:
    """The proxy on a scripted upstream, with :func:`bok_config` as ``configure`` changes it."""
    upstream = FakeUpstream()
    try:
        config = bok_config(await upstream.start())
        if configure is not None:
            config = configure(config)
        app = create_app(config, predictor=HashPredictor())
        async with (
            running(app) as url,
            AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
        ):
            yield upstream, client
    finally:
        await upstream.close()


async def answer(model: str, *replies: Reply, **request: Any) -> tuple[FakeUpstream, Any]:
    """The scripted upstream, and ``model``'s response to ``MESSAGES`` on those ``replies``."""
    async with proxy() as (upstream, client):
        upstream.script(*replies)
        response = await client.chat.completions.create(model=model, messages=MESSAGES, **request)
    return upstream, response


def first_call(response: Any) -> Any:
    """The winning choice's first tool call (a function call)."""
    calls = response.choices[0].message.tool_calls
    assert calls, "no tool call"
    return calls[0].function


def adaptive_of(response: Any) -> dict[str, Any]:
    extra: dict[str, Any] = response.model_extra or {}
    return dict(extra["adaptive"])


def test_a_request_says_what_its_answers_are() -> None:
    assert structured_kind({"tools": TOOLS}) == "tool_calls"
    assert structured_kind({"response_format": JSON_FORMAT}) == "json"
    assert structured_kind({"text": {"format": {"type": "json_schema"}}}) == "json"
    assert structured_kind({"response_format": {"type": "text"}}) is None


def test_tool_calls_are_canonical_whatever_the_key_order() -> None:
    one = completion(
        "m", None, tool_calls=[{"function": {"name": "f", "arguments": '{"b":1,"a":2}'}}]
    )
    two = completion(
        "m", None, tool_calls=[{"function": {"name": "f", "arguments": '{ "a": 2, "b": 1 }'}}]
    )
    broken = completion("m", None, tool_calls=[{"function": {"name": "f", "arguments": '{"a": 2'}}])
    canonical = canonical_answer(one["choices"][0], "tool_calls")
    assert canonical == '[{"arguments":{"a":2,"b":1},"name":"f"}]'
    assert canonical_answer(two["choices"][0], "tool_calls") == canonical
    assert canonical_answer(broken["choices"][0], "tool_calls") is None


async def test_vote_over_tool_calls_picks_the_majority_call() -> None:
    upstream, response = await answer(
        "vote",
        tool_reply('{"city": "Lyon"}'),
        tool_reply('{"unit": "C", "city": "Paris"}'),
        tool_reply('{"city":"Paris","unit":"C"}'),
        tools=TOOLS,
    )
    assert len(response.choices[0].message.tool_calls or ()) == 1
    assert json.loads(first_call(response).arguments) == {"city": "Paris", "unit": "C"}
    adaptive = adaptive_of(response)
    assert adaptive["reranker"] == "vote" and adaptive["n"] == 3
    assert adaptive["winner"] in (1, 2)
    assert adaptive["candidates_kind"] == "tool_calls"
    assert all(r.body["tools"] == TOOLS for r in upstream.requests)


async def test_vote_over_json_compares_objects_not_their_spelling() -> None:
    _, response = await answer(
        "vote",
        text_reply('{"answer": 5}'),
        text_reply('{"answer": 6, "unit": "apples"}'),
        text_reply('{"unit":"apples",\n "answer":6}'),
        response_format=JSON_FORMAT,
    )
    assert json.loads(response.choices[0].message.content or "") == {"answer": 6, "unit": "apples"}
    assert adaptive_of(response)["candidates_kind"] == "json"


@pytest.mark.parametrize("model", ["vote", "first"])
async def test_a_candidate_whose_json_does_not_parse_is_never_returned(model: str) -> None:
    # The broken ones come first and agree with each other: still not the answer.
    _, response = await answer(
        model,
        text_reply('{"answer": 6'),
        text_reply('{"answer": 6'),
        text_reply('{"answer": 7}'),
        response_format=JSON_FORMAT,
    )
    assert json.loads(response.choices[0].message.content or "") == {"answer": 7}
    adaptive = adaptive_of(response)
    assert adaptive["winner"] == 2
    assert adaptive["candidates_unparseable"] == 2


async def test_a_tool_call_with_broken_arguments_loses_to_a_parseable_one() -> None:
    _, response = await answer(
        "vote",
        tool_reply('{"city": "Paris"'),
        tool_reply('{"city": "Paris"'),
        tool_reply('{"city": "Rome"}'),
        tools=TOOLS,
    )
    assert json.loads(first_call(response).arguments) == {"city": "Rome"}


async def test_a_reranker_that_reads_prose_answers_routes_instead() -> None:
    async with proxy() as (upstream, client):
        upstream.script(tool_reply('{"city": "Paris"}'))
        raw = await client.chat.completions.with_raw_response.create(
            model="prose-vote", messages=MESSAGES, tools=TOOLS
        )
        response = raw.parse()
    assert raw.headers["x-adaptive-fallback-reason"] == "unrankable_candidates"
    assert raw.headers["x-adaptive-n"] == "1"
    adaptive = adaptive_of(response)
    assert adaptive["fallback_reason"] == "unrankable_candidates"
    assert len(upstream.requests) == 1  # one call, not k
    assert first_call(response).name == "get_weather"


async def test_a_streamed_best_of_k_sends_the_winning_tool_call() -> None:
    async with proxy() as (upstream, client):
        upstream.script(
            tool_reply('{"city": "Lyon"}'),
            tool_reply('{"city": "Paris"}'),
            tool_reply('{"city": "Paris"}'),
        )
        stream = await client.chat.completions.create(
            model="vote", messages=MESSAGES, tools=TOOLS, stream=True
        )
        chunks = [c async for c in stream]
    calls = [call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function is not None
    assert json.loads(calls[0].function.arguments or "") == {"city": "Paris"}


async def test_a_reward_model_scores_the_canonical_tool_calls_that_parse() -> None:
    seen: list[Any] = []

    async def score(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body["candidates"])
        return web.json_response({"scores": [len(c) for c in body["candidates"]]})

    reward = web.Application()
    reward.router.add_post("/score", score)
    async with running(reward) as reward_url:

        def with_reward(config: Config) -> Config:
            reranker = RerankerConfig(type="reward", url=f"{reward_url}/score")
            policies = {"reward": config.policies["vote"].model_copy(update={"reranker": reranker})}
            return config.model_copy(update={"policies": policies})

        async with proxy(with_reward) as (upstream, client):
            upstream.script(
                tool_reply('{"city": "Rome"}'),
                tool_reply('{"city": "Paris", "unit": "C"}'),
                tool_reply('{"city": "Paris", "unit": "C", "days": 3'),
            )
            response = await client.chat.completions.create(
                model="reward", messages=MESSAGES, tools=TOOLS
            )
    assert seen == [
        [
            '[{"arguments":{"city":"Rome"},"name":"get_weather"}]',
            '[{"arguments":{"city":"Paris","unit":"C"},"name":"get_weather"}]',
        ]
    ]
    assert json.loads(first_call(response).arguments) == {"city": "Paris", "unit": "C"}
    assert adaptive_of(response)["reranker"] == "reward"


async def test_sequential_rounds_vote_over_canonical_tool_calls() -> None:
    # Round one: a broken call and a call to Rome, no majority; round two: two calls to
    # Paris in other spellings. The broken one never counts as a vote or wins.
    _, response = await answer(
        "sequential",
        tool_reply('{"city": "Paris"'),
        tool_reply('{"city": "Rome"}'),
        tool_reply('{"unit": "C", "city": "Paris"}'),
        tool_reply('{"city":"Paris","unit":"C"}'),
        tools=TOOLS,
    )
    assert json.loads(first_call(response).arguments) == {"city": "Paris", "unit": "C"}
    adaptive = adaptive_of(response)
    assert adaptive["rounds"] == 2
    assert adaptive["candidates_unparseable"] == 1
    answers = [c["answer"] for c in adaptive["candidates"]]
    assert answers[0] is None
    assert (
        answers[2]
        == answers[3]
        == '[{"arguments":{"city":"Paris","unit":"C"},"name":"get_weather"}]'
    )


class RomeJudge(FakeUpstream):
    """A judge upstream that names the candidate calling for Rome (``{"best_index": i}``)."""

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Received(body, dict(request.headers)))
        prompt = body["messages"][0]["content"]
        best = prompt[: prompt.index('"Rome"')].count("[Candidate ")
        return web.json_response(completion("judge-model", json.dumps({"best_index": best})))


async def test_a_judge_sees_the_canonical_tool_calls_that_parse() -> None:
    judge = RomeJudge()
    try:
        judge_url = await judge.start()

        def with_judge(config: Config) -> Config:
            judge_cfg = config.upstreams["pool"].model_copy(
                update={"base_url": judge_url, "model": "judge-model"}
            )
            reranker = RerankerConfig(type="judge", upstream="judge")
            vote = config.policies["vote"]
            return config.model_copy(
                update={
                    "upstreams": {**config.upstreams, "judge": judge_cfg},
                    "policies": {"judged": vote.model_copy(update={"reranker": reranker})},
                }
            )

        async with proxy(with_judge) as (upstream, client):
            upstream.script(
                tool_reply('{"city": "Paris"}'),
                tool_reply('{"city": "Rome", "unit": "C"'),
                tool_reply('{"unit": "C", "city": "Rome"}'),
            )
            response = await client.chat.completions.create(
                model="judged", messages=MESSAGES, tools=TOOLS
            )
    finally:
        await judge.close()
    prompt = judge.requests[0].body["messages"][0]["content"]
    assert "[Candidate 3]" not in prompt  # the broken call is not shown
    assert '[{"arguments":{"city":"Rome","unit":"C"},"name":"get_weather"}]' in prompt
    assert json.loads(first_call(response).arguments) == {"city": "Rome", "unit": "C"}
    assert adaptive_of(response)["winner"] == 2
