"""Exploration end to end, configured by ``learning:`` as an operator would: a real proxy, fake
upstreams for each arm and the judge, the proxy's own outcome log in a real SQLite file (a real
redis-server for the shared budget, and then for the log too)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from proxy.config.schema import load_config_text
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from proxy.http.explore import explorer_of
from proxy.http.state import CONFIG as CONFIG_KEY
from proxy.http.state import LEARNING
from proxy.learn.explore_budget import ExploreBudget
from proxy.learn.records import LabelRecord
from proxy.learn.store import OutcomeStore
from proxy.wire.redis_client import make_redis
from tests.proxy.fake_upstream import FakeUpstream, Received, Reply, completion
from tests.proxy.learn.builders import keyed_server, redis_store, sqlite_store
from tests.redis_server import RedisServer
from tests.servers import running

KEY = "sk-team-explore"
MASTER = "sk-master-explore"
CONFIG = """
{server}
upstreams:
  cheap: {{base_url: "{cheap}", model: m-cheap, price_in_per_mtok_usd: 1.0,
           price_out_per_mtok_usd: 2.0, retries: 0}}
  cheap-b: {{base_url: "{cheap}", model: m-cheap-b, price_in_per_mtok_usd: 1.0,
             price_out_per_mtok_usd: 2.0, retries: 0}}
  expensive: {{base_url: "{expensive}", model: m-exp, price_in_per_mtok_usd: 10.0,
               price_out_per_mtok_usd: 30.0, retries: 0}}
  judge: {{base_url: "{judge}", model: m-judge, price_in_per_mtok_usd: 5.0,
           price_out_per_mtok_usd: 5.0, retries: 0}}
policies:
  router: {{type: route, cheap: cheap, expensive: expensive, threshold: 0.5, learn: true}}
  casc:
    type: cascade
    stages: [{{upstream: cheap}}, {{upstream: cheap-b}}, {{upstream: expensive}}]
    escalate: {{threshold: 0.5}}
    answer_pattern: "#### (\\\\d+)"
    learn: true
  effort-router:
    type: route
    cheap: {{upstream: expensive, overrides: {{reasoning_effort: low}}}}
    expensive: {{upstream: expensive, overrides: {{reasoning_effort: high}}}}
    threshold: 0.5
    learn: true
predictor: {{type: hash}}
{cache}
learning:
  store: {store}
  explore_fraction: {fraction}
  explore_budget_usd_per_day: {budget}
  judge: judge
"""
ENV = {"MASTER_KEY": MASTER}


class PreferringJudge(FakeUpstream):
    """A judge upstream that names the candidate containing :attr:`prefer`, in the judge
    reranker's protocol (``{"best_index": i}``)."""

    def __init__(self) -> None:
        super().__init__()
        self.prefer = "The answer is"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(Received(body, dict(request.headers)))
        prompt = body["messages"][0]["content"]
        best = prompt[: prompt.index(self.prefer)].count("[Candidate ")
        return web.json_response(completion("m-judge", json.dumps({"best_index": best})))


class Witness(FakeUpstream):
    """A fake upstream that notes, for each request, whether the client had its answer yet, and
    holds its reply while :attr:`gate` is set and not open."""

    def __init__(self) -> None:
        super().__init__()
        self.client_done = asyncio.Event()
        self.arrived_after_client: list[bool] = []
        self.gate: asyncio.Event | None = None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.arrived_after_client.append(self.client_done.is_set())
        if self.gate is not None:
            await self.gate.wait()
        return await super()._chat(request)


@dataclass
class Stack:
    url: str
    cheap: FakeUpstream
    expensive: Witness
    judge: PreferringJudge
    store: OutcomeStore
    app: web.Application
    config_path: Path

    async def settle(self) -> None:
        """Wait for the background runs and for the outcome log's writes."""
        explorer = explorer_of(self.app)
        assert explorer is not None
        await explorer.drain()
        runtime = self.app[LEARNING].runtime
        assert runtime is not None
        await runtime.log.flush()

    async def explored(self, request_id: str) -> list[LabelRecord]:
        """The explored labels of a request (an escalated cascade has a free one too)."""
        return [x for x in (await self.store.get(request_id)).labels if x.kind == "explored"]

    async def chat(
        self, session: aiohttp.ClientSession, model: str, request_id: str
    ) -> dict[str, Any]:
        """One chat request (the proxy logs it: its policy has ``learn: true``)."""
        async with session.post(
            f"{self.url}/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "What is 6*7?"}]},
            headers={"Authorization": f"Bearer {KEY}", "x-request-id": request_id},
        ) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
        self.expensive.client_done.set()
        return body

    async def metric(self, session: aiohttp.ClientSession, prefix: str) -> float:
        async with session.get(f"{self.url}/metrics") as response:
            text = await response.text()
        values = [
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
        ]
        return sum(values)


def config_text(
    urls: dict[str, str], *, store: str, cache: str, fraction: float, budget: float
) -> str:
    """The policy file of the exploration tests."""
    return CONFIG.format(
        server=keyed_server({"team": KEY}),
        store=store,
        cache=cache,
        fraction=fraction,
        budget=budget,
        **urls,
    )


@asynccontextmanager
async def explore_stack(
    tmp_path: Path, *, gain: float = 0.0, budget_usd: float = 1.0, redis_url: str | None = None
) -> AsyncIterator[Stack]:
    cheap, expensive, judge = FakeUpstream(), Witness(), PreferringJudge()
    store: OutcomeStore
    try:
        urls = {
            "cheap": await cheap.start(),
            "expensive": await expensive.start(),
            "judge": await judge.start(),
        }
        path = tmp_path / "outcomes.sqlite3"
        if redis_url is None:
            # No Redis: the budget is counted in process, the log is an SQLite file.
            settings = {"store": f'"{path}"', "cache": ""}
            store = sqlite_store(path)
        else:
            settings = {"store": "null", "cache": f'cache: {{redis_url: "{redis_url}"}}'}
            store = redis_store(redis_url)
        text = config_text(urls, fraction=1.0, budget=budget_usd, **settings)
        config_path = tmp_path / "policies.yaml"
        config_path.write_text(text)
        config = load_config_text(text, env=ENV)
        predictor = HashPredictor(
            overrides={"": {"p_weak": 0.5 - gain / 2, "p_strong": 0.5 + gain / 2}}
        )
        app = create_app(config, predictor=predictor, env=ENV, config_path=config_path)
        try:
            async with running(app) as url:
                yield Stack(url, cheap, expensive, judge, store, app, config_path)
        finally:
            await store.aclose()
    finally:
        for fake in (cheap, expensive, judge):
            await fake.close()


async def test_the_other_arm_runs_only_after_the_client_has_its_answer(tmp_path: Path) -> None:
    async with explore_stack(tmp_path) as stack, aiohttp.ClientSession() as session:
        stack.cheap.script(Reply(body=completion("m-cheap", "It is 42.")))
        stack.expensive.script(Reply(body=completion("m-exp", "The answer is 42.")))
        # The background run is held at the upstream until the client has read its whole
        # answer: a run the answer waited for would never let the client finish.
        stack.expensive.gate = asyncio.Event()
        async with asyncio.timeout(30):  # a guard against hanging, not a measurement
            body = await stack.chat(session, "router", "r-order")
        stack.expensive.gate.set()
        assert body["adaptive"]["arm"] == "cheap"
        assert body["choices"][0]["message"]["content"] == "It is 42."
        await stack.settle()
        # One call to the expensive upstream: the background run, after the client's answer.
        assert stack.expensive.arrived_after_client == [True]
        assert stack.expensive.requests[0].body["model"] == "m-exp"
        assert "n" not in stack.expensive.requests[0].body
        # The judge saw both answers; it prefers the expensive one: the cheap arm failed.
        prompt = stack.judge.requests[0].body["messages"][0]["content"]
        assert "It is 42." in prompt and "The answer is 42." in prompt
        found = await stack.store.get("r-order")
        assert found.record is not None and found.record.explore  # the record says so
        (label,) = found.labels
        assert (label.kind, label.source) == ("explored", "explore:judge")
        assert label.arm_rewards == {"cheap": 0.0}
        assert (
            await stack.metric(session, 'adaptive_explore_requests_total{outcome="labelled"') == 1
        )
        assert await stack.metric(session, "adaptive_explore_spend_usd_total") > 0


async def test_the_other_effort_of_one_model_is_explored_at_its_effort(tmp_path: Path) -> None:
    async with explore_stack(tmp_path) as stack, aiohttp.ClientSession() as session:
        body = await stack.chat(session, "effort-router", "r-effort")
        assert body["adaptive"]["arm"] == "cheap"
        await stack.settle()
    # The client's answer at low effort, then the background run at the expensive arm's.
    efforts = [r.body.get("reasoning_effort") for r in stack.expensive.requests]
    assert efforts == ["low", "high"]
    assert stack.expensive.arrived_after_client == [False, True]


async def test_a_judge_preferring_the_cheap_answer_labels_it_a_success(tmp_path: Path) -> None:
    async with explore_stack(tmp_path, gain=0.8) as stack, aiohttp.ClientSession() as session:
        # The expensive arm answers the client; the cheap one runs in the background.
        stack.judge.prefer = "It is 42."
        stack.cheap.script(Reply(body=completion("m-cheap", "It is 42.")))
        stack.expensive.script(Reply(body=completion("m-exp", "The answer is 42.")))
        body = await stack.chat(session, "router", "r-cheap-wins")
        assert body["adaptive"]["arm"] == "expensive"
        await stack.settle()
        assert len(stack.cheap.requests) == 1
        (label,) = await stack.explored("r-cheap-wins")
        assert label.arm_rewards == {"cheap": 1.0}


async def test_a_cascade_pair_is_labelled_by_agreement_of_its_answers(tmp_path: Path) -> None:
    async with explore_stack(tmp_path) as stack, aiohttp.ClientSession() as session:
        # The cheap stages agree: no escalation; the last stage runs in the background.
        stack.cheap.script(
            Reply(body=completion("m-cheap", "so #### 42")),
            Reply(body=completion("m-cheap-b", "thus #### 42")),
            Reply(body=completion("m-cheap", "so #### 41")),
            Reply(body=completion("m-cheap-b", "thus #### 41")),
        )
        stack.expensive.script(
            Reply(body=completion("m-exp", "hence #### 42")),
            Reply(body=completion("m-exp", "hence #### 40")),
        )
        first = await stack.chat(session, "casc", "c-agree")
        await stack.settle()
        second = await stack.chat(session, "casc", "c-disagree")
        await stack.settle()
        assert first["adaptive"]["arm"] == second["adaptive"]["arm"] == "cheap"
        assert not stack.judge.requests  # an answer pattern needs no judge
        (agree,) = await stack.explored("c-agree")
        (disagree,) = await stack.explored("c-disagree")
        assert agree.source == disagree.source == "explore:agreement"
        assert (agree.arm_rewards, disagree.arm_rewards) == ({"cheap": 1.0}, {"cheap": 0.0})


async def test_an_escalated_cascade_runs_its_first_stage_again(tmp_path: Path) -> None:
    async with explore_stack(tmp_path) as stack, aiohttp.ClientSession() as session:
        stack.cheap.script(
            Reply(body=completion("m-cheap", "so #### 1")),
            Reply(body=completion("m-cheap-b", "thus #### 2")),
            Reply(body=completion("m-cheap", "again #### 7")),
        )
        stack.expensive.script(Reply(body=completion("m-exp", "hence #### 7")))
        body = await stack.chat(session, "casc", "c-escalated")
        assert body["adaptive"]["arm"] == "expensive"
        await stack.settle()
        assert [r.body["model"] for r in stack.cheap.requests][-1] == "m-cheap"
        (label,) = await stack.explored("c-escalated")
        assert label.arm_rewards == {"cheap": 1.0}


async def test_the_daily_budget_stops_exploration_across_replicas(tmp_path: Path) -> None:
    server = RedisServer()
    server.start()
    redis = make_redis(server.url, timeout_s=1.0, max_connections=4, health_check_interval_s=5.0)
    try:
        async with explore_stack(tmp_path, budget_usd=0.01, redis_url=server.url) as stack:
            async with aiohttp.ClientSession() as session:
                await stack.chat(session, "router", "b-1")
                await stack.settle()
                assert len(stack.expensive.requests) == 1
                # Another replica spent the rest of today's budget on the same counter.
                await ExploreBudget(0.01, redis=redis).add("router", 0.01)
                await stack.chat(session, "router", "b-2")
                await stack.settle()
                assert len(stack.expensive.requests) == 1  # not explored
                over = 'adaptive_explore_requests_total{outcome="over_budget"'
                assert await stack.metric(session, over) == 1
                assert await stack.explored("b-2") == []
    finally:
        await redis.aclose()
        server.close()


async def test_a_zero_budget_explores_nothing(tmp_path: Path) -> None:
    async with explore_stack(tmp_path, budget_usd=0.0) as stack, aiohttp.ClientSession() as session:
        await stack.chat(session, "router", "z-1")
        await stack.settle()
        assert stack.expensive.requests == [] and stack.judge.requests == []


async def test_exploration_is_not_charged_to_the_client_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="adaptive_proxy.access")
    async with explore_stack(tmp_path) as stack, aiohttp.ClientSession() as session:
        stack.expensive.script(Reply(body=completion("m-exp", "The answer is 42.")))
        body = await stack.chat(session, "router", "k-1")
        await stack.settle()
        own_cost = body["adaptive"]["cost_usd"]
        explore_spend = await stack.metric(session, "adaptive_explore_spend_usd_total")
        assert explore_spend > own_cost > 0
        charged = await stack.metric(session, 'adaptive_client_spend_usd_total{key="team"}')
        assert charged == pytest.approx(own_cost)
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "adaptive_proxy.access"
    ]
    (explored,) = [line for line in lines if line.get("explore")]
    (served,) = [line for line in lines if line.get("path") == "/v1/chat/completions"]
    assert explored["request_id"] == served["request_id"] == "k-1"
    assert (explored["arm"], explored["upstream"], explored["outcome"]) == (
        "expensive",
        "expensive",
        "labelled",
    )
    assert explored["cost_usd"] > 0 and "explore" not in served


async def test_a_reload_turns_exploration_off_and_on(tmp_path: Path) -> None:
    async with explore_stack(tmp_path) as stack, aiohttp.ClientSession() as session:
        stack.expensive.script(*[Reply(body=completion("m-exp", "The answer is 42."))] * 2)
        await stack.chat(session, "router", "o-1")
        await stack.settle()
        assert len(stack.expensive.requests) == 1
        text = stack.config_path.read_text()
        stack.config_path.write_text(text.replace("explore_fraction: 1.0", "explore_fraction: 0.0"))
        assert await stack.app[CONFIG_KEY].reload()
        assert explorer_of(stack.app) is None
        await stack.chat(session, "router", "o-2")
        assert len(stack.expensive.requests) == 1  # not explored
        stack.config_path.write_text(text)
        assert await stack.app[CONFIG_KEY].reload()
        await stack.chat(session, "router", "o-3")
        await stack.settle()
        assert len(stack.expensive.requests) == 2
        assert [len(await stack.explored(r)) for r in ("o-1", "o-2", "o-3")] == [1, 0, 1]
