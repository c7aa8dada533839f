"""Policies on ``POST /v1/responses``, driven by the openai SDK through the proxy against replay.

Each policy type answers ``client.responses.create`` (JSON and the event stream) with the real
recorded answer its decision implies; a follow-up naming ``previous_response_id`` goes where the
response lives (in process and, across two proxies, through Redis).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from proxy.config.schema import Config, load_config_text
from proxy.decide.prediction import HashPredictor
from proxy.execute.rerank_text import extract_answer
from proxy.http.app import create_app
from proxy.wire.tokens import count_tokens
from recorded_data.records import MODEL_STRONG, MODEL_WEAK, Record
from replay.server import LatencyModel, create_replay_app
from replay.store import POOL_ARMS, ReplayStore
from tests.redis_server import RedisServer
from tests.replay_helpers import replay_upstream
from tests.servers import running

POLICY = """
server: {{keepalive_interval_s: 0.02}}
upstreams:
  weak-chat: {{base_url: "{a}", model: "{weak}"}}
  strong-chat: {{base_url: "{a}", model: "{strong}"}}
  checker: {{base_url: "{a}", model: gsm8k-6b-finetuning}}
  weak-native: {{base_url: "{a}", model: "{weak}", responses_api: true}}
  strong-native: {{base_url: "{a}", model: "{strong}", responses_api: true}}
  other-native: {{base_url: "{b}", model: "{strong}", responses_api: true}}
  pool: {{base_url: "{a}", model: gsm8k-pool, supports_n: false}}
  slow-pool: {{base_url: "{slow}", model: gsm8k-pool, supports_n: false}}
  down-native: {{base_url: "http://127.0.0.1:9/v1", model: nothing, retries: 0,
                connect_timeout_s: 1, responses_api: true}}
{cache}
policies:
  route-native: {{type: route, cheap: weak-native, expensive: strong-native, threshold: -1}}
  route-chat: {{type: route, cheap: weak-chat, expensive: strong-chat, threshold: 2}}
  ladder:
    type: ladder
    lambda: 0
    arms:
      - {{name: one, upstream: weak-chat, predictor_output: p_weak}}
      - {{name: vote3, upstream: pool, n: 3, predictor_output: p_strong}}
  bok: {{type: best_of_k, upstream: pool, n_min: 3, n_max: 3, reranker: {{type: vote}}}}
  seq:
    type: best_of_k
    upstream: pool
    n_max: 4
    reranker: {{type: vote}}
    sequential: {{first_n: 2, step_n: 1, stop: {{kind: vote, confidence: 0.9}}}}
  casc:
    type: cascade
    stages: [{{upstream: weak-chat}}, {{upstream: checker}}, {{upstream: strong-chat}}]
    escalate: {{threshold: 0.5}}
  pass: {{type: passthrough, upstream: weak-native}}
  slow-bok: {{type: best_of_k, upstream: slow-pool, n_min: 2, n_max: 2, reranker: {{type: vote}}}}
  route-down:
    type: route
    cheap: down-native
    expensive: strong-native
    threshold: 2
    fallback: weak-native
  via-a: {{type: passthrough, upstream: weak-native}}
  via-b: {{type: passthrough, upstream: other-native}}
"""


def make_config(
    a: str, b: str, redis_url: str | None = None, slow: str = "http://127.0.0.1:9/v1"
) -> Config:
    cache = f'cache: {{redis_url: "{redis_url}"}}' if redis_url else ""
    text = POLICY.format(a=a, b=b, weak=MODEL_WEAK, strong=MODEL_STRONG, cache=cache, slow=slow)
    return load_config_text(text, env={})


@pytest.fixture(scope="module")
def question(replay_store: ReplayStore) -> Record:
    """A GSM8K question whose six recorded solutions all give one answer."""
    return next(
        r
        for r in replay_store.records()
        if r.dataset == "gsm8k"
        and all(a in r.responses for a in POOL_ARMS)
        and len({extract_answer(r.responses[a]) for a in POOL_ARMS}) == 1
    )


@pytest.fixture(scope="module")
def two_turns(replay_store: ReplayStore) -> tuple[Record, Record]:
    """An MT-Bench question's turn 1 and turn 2 records."""
    by_id = {r.prompt_id: r for r in replay_store.records()}
    return by_id["mtbench/85/t1"], by_id["mtbench/85/t2"]


@pytest.fixture
async def other_replay(replay_store: ReplayStore) -> AsyncIterator[str]:
    """A second replay upstream: it holds none of the first one's stored responses."""
    async with replay_upstream(replay_store) as url:
        yield url


def predictor(question: Record) -> HashPredictor:
    # The ladder's three-sample arm wins on this question.
    text = str(question.messages[-1]["content"])
    return HashPredictor({text[:60]: {"p_weak": 0.2, "p_strong": 0.9, "gain": 0.5}})


@pytest.fixture
async def client(
    replay_base_url: str, other_replay: str, question: Record
) -> AsyncIterator[AsyncOpenAI]:
    app = create_app(make_config(replay_base_url, other_replay), predictor=predictor(question))
    async with (
        running(app) as url,
        AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as sdk,
    ):
        yield sdk


def pool_texts(record: Record) -> set[str]:
    return {record.responses[a] for a in POOL_ARMS}


# policy -> (arm the decision reports, answered natively by the upstream, samples drawn)
POLICIES = {
    "route-native": ("expensive", True, 1),
    "route-chat": ("cheap", False, 1),
    "pass": ("passthrough", True, 1),
    "ladder": ("vote3", False, 3),
    "bok": ("best_of_3", False, 3),
    "seq": ("sequential", False, 2),
    "casc": ("weak-chat", False, 1),
}


def expected_text(policy: str, record: Record) -> str | None:
    """The recorded answer a policy returns (``None``: one of the pool's, by vote)."""
    return {
        "route-native": record.responses["strong"],
        "route-chat": record.responses["weak"],
        "pass": record.responses["weak"],
        "casc": record.responses["weak"],  # the cheap stages agree: no escalation
    }.get(policy)


def check_answer(policy: str, record: Record, text: str) -> None:
    wanted = expected_text(policy, record)
    if wanted is None:
        assert text in pool_texts(record)
    else:
        assert text == wanted


@pytest.mark.parametrize("policy", sorted(POLICIES))
async def test_each_policy_answers_a_responses_request(
    client: AsyncOpenAI, question: Record, policy: str
) -> None:
    raw = await client.responses.with_raw_response.create(
        model=policy, input=str(question.messages[-1]["content"]), metadata={"mine": "kept"}
    )
    response = raw.parse()
    assert response.status == "completed"
    check_answer(policy, question, response.output_text)
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens >= count_tokens(response.output_text)
    assert raw.headers["x-adaptive-policy"] == policy
    arm, native, _ = POLICIES[policy]
    assert raw.headers["x-adaptive-arm"] == arm
    assert response.metadata is not None and response.metadata["mine"] == "kept"
    decision = json.loads(response.metadata["adaptive"])
    assert decision["policy"] == policy and decision["arm"] == raw.headers["x-adaptive-arm"]
    assert len(response.metadata["adaptive"]) <= 512
    # Only the upstream's own Responses object carries the replay's extra field.
    assert ("replay" in (response.model_extra or {})) is native


@pytest.mark.parametrize("policy", sorted(POLICIES))
async def test_each_policy_streams_responses_events(
    client: AsyncOpenAI, question: Record, policy: str
) -> None:
    events: list[Any] = []
    async with client.responses.with_streaming_response.create(
        model=policy, input=str(question.messages[-1]["content"]), stream=True
    ) as raw:
        headers = raw.headers
        async for event in await raw.parse():
            events.append(event)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    check_answer(policy, question, text)
    assert final.output_text == text
    assert final.usage is not None and final.usage.output_tokens > 0
    assert headers["x-adaptive-policy"] == policy
    decision = json.loads(final.metadata["adaptive"])
    assert decision["policy"] == policy and "cost_usd" in decision
    assert events[0].response.metadata["adaptive"]


async def test_instructions_and_items_reach_the_model_as_messages(
    client: AsyncOpenAI, question: Record
) -> None:
    response = await client.responses.create(
        model="bok",
        instructions="Solve the problem.",
        input=[
            {
                "role": "user",
                "content": [{"type": "input_text", "text": str(question.messages[-1]["content"])}],
            }
        ],
    )
    assert extract_answer(response.output_text) == extract_answer(question.responses["weak"])


async def test_a_follow_up_goes_to_the_upstream_holding_its_previous_response(
    client: AsyncOpenAI, two_turns: tuple[Record, Record]
) -> None:
    turn1, turn2 = two_turns
    first = await client.responses.create(model="via-a", input=str(turn1.messages[-1]["content"]))
    assert first.output_text == turn1.responses["weak"]
    # via-b's own upstream never saw the first response; the follow-up still finds it.
    raw = await client.responses.with_raw_response.create(
        model="via-b", previous_response_id=first.id, input=str(turn2.messages[-1]["content"])
    )
    follow_up = raw.parse()
    assert follow_up.output_text == turn2.responses["weak"]
    assert raw.headers["x-adaptive-arm"] == "previous_response"
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.responses.create(model="via-b", previous_response_id="resp_nope", input="hi")
    assert unknown.value.code == "previous_response_not_found"


async def test_a_follow_up_to_an_assembled_response_continues_its_conversation(
    client: AsyncOpenAI, two_turns: tuple[Record, Record]
) -> None:
    turn1, turn2 = two_turns
    first = await client.responses.create(
        model="route-chat", input=str(turn1.messages[-1]["content"])
    )
    follow_up = await client.responses.create(
        model="route-chat", previous_response_id=first.id, input=str(turn2.messages[-1]["content"])
    )
    assert follow_up.output_text == turn2.responses["weak"]
    assert follow_up.previous_response_id == first.id
    forgotten = await client.responses.create(
        model="route-chat", input=str(turn1.messages[-1]["content"]), store=False
    )
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(
            model="route-chat",
            previous_response_id=forgotten.id,
            input=str(turn2.messages[-1]["content"]),
        )


async def test_two_proxies_share_response_homes_through_redis(
    replay_base_url: str,
    other_replay: str,
    question: Record,
    two_turns: tuple[Record, Record],
    redis_server: RedisServer,
) -> None:
    turn1, turn2 = two_turns
    config = make_config(replay_base_url, other_replay, redis_server.url)
    async with (
        running(create_app(config, predictor=predictor(question))) as url_1,
        running(create_app(config, predictor=predictor(question))) as url_2,
        AsyncOpenAI(base_url=f"{url_1}/v1", api_key="x", max_retries=0) as one,
        AsyncOpenAI(base_url=f"{url_2}/v1", api_key="x", max_retries=0) as two,
    ):
        first = await one.responses.create(model="via-a", input=str(turn1.messages[-1]["content"]))
        follow_up = await two.responses.create(
            model="via-b", previous_response_id=first.id, input=str(turn2.messages[-1]["content"])
        )
    assert follow_up.output_text == turn2.responses["weak"]


async def test_other_models_still_pass_through(client: AsyncOpenAI, question: Record) -> None:
    response = await client.responses.create(
        model=MODEL_STRONG, input=str(question.messages[-1]["content"])
    )
    assert response.output_text == question.responses["strong"]
    assert "adaptive" not in (response.model_extra or {})


async def test_a_built_in_tool_needs_a_native_upstream(
    client: AsyncOpenAI, question: Record
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(
            model="bok", input="hi", tools=[{"type": "web_search_preview"}]
        )
    assert refused.value.param == "tools[0].type"
    assert "responses_api: true" in refused.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failing_native_upstream_falls_back_to_the_policy_fallback(
    client: AsyncOpenAI, question: Record, stream: bool
) -> None:
    prompt = str(question.messages[-1]["content"])
    if stream:
        async with client.responses.with_streaming_response.create(
            model="route-down", input=prompt, stream=True
        ) as raw:
            headers = raw.headers
            events: list[Any] = [event async for event in await raw.parse()]
        final: Any = events[-1].response
    else:
        answered = await client.responses.with_raw_response.create(model="route-down", input=prompt)
        headers, final = answered.headers, answered.parse()
    assert final.output_text == question.responses["weak"]
    assert headers["x-adaptive-arm"] == "cheap"
    assert headers["x-adaptive-fallback"] == "weak-native"
    assert json.loads(final.metadata["adaptive"])["fallback_upstream"] == "weak-native"


async def test_best_of_k_streams_keep_alives_while_it_samples(
    replay_store: ReplayStore, replay_base_url: str, other_replay: str, question: Record
) -> None:
    slow = TestServer(create_replay_app(replay_store, latency=LatencyModel(ttft_ms=200.0)), port=0)
    await slow.start_server()
    try:
        config = make_config(replay_base_url, other_replay, slow=str(slow.make_url("/v1")))
        body = {"model": "slow-bok", "input": str(question.messages[-1]["content"]), "stream": True}
        async with (
            running(create_app(config, predictor=predictor(question))) as url,
            aiohttp.ClientSession() as http,
            http.post(f"{url}/v1/responses", json=body) as resp,
        ):
            raw = await resp.read()
    finally:
        await slow.close()
    assert resp.status == 200 and resp.headers["x-adaptive-n"] == "2"
    head, _, rest = raw.partition(b"event: response.created")
    assert b": keep-alive" in head  # before the first event, while the samples were drawn
    assert b"event: response.completed" in rest and b"[DONE]" not in raw
