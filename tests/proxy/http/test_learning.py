"""``POST /v1/adaptive/feedback`` and ``GET /v1/adaptive/learning`` on a real proxy with
``server.auth`` (two client keys and a master key), the replay upstream, the OpenAI SDK for chat
and a real SQLite outcome store, read back by a store of its own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openai import AsyncOpenAI

from proxy.config.schema import load_config_text
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from proxy.http.state import LEARNING
from proxy.learn.store import Labelled
from proxy.learn.targets import build_examples, route_spec
from proxy.learn.wiring import prior_version
from recorded_data.records import Record
from replay.store import ReplayStore
from tests.proxy.learn.builders import DIM, keyed_server, make_record, sqlite_store
from tests.replay_helpers import replay_upstreams
from tests.servers import running

KEYS = {"team-a": "sk-team-a-0001", "team-b": "sk-team-b-0002"}
MASTER = "sk-master-0003"
ENV = {"MASTER_KEY": MASTER}
CONFIG = """
{server}
upstreams:
{upstreams}
policies:
  router: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.5, learn: true}}
  casc:
    type: cascade
    stages: [{{upstream: mixtral}}, {{upstream: gpt-4}}]
    escalate: {{threshold: 0.5}}
    learn: true
predictor: {{type: hash}}
learning: {{store: "{store}", feedback_max_batch: 3, retention_days: 30}}
"""


@pytest.fixture(scope="module")
def question(replay_store: ReplayStore) -> Record:
    """A recorded GSM8K question (the replay upstream answers it)."""
    return next(r for r in replay_store.records() if r.dataset == "gsm8k")


@dataclass
class Stack:
    url: str
    app: web.Application
    store_path: Path
    session: aiohttp.ClientSession
    messages: list[dict[str, Any]]

    async def chat(self, rid: str, key: str = "team-a", model: str = "router") -> str:
        """One chat completion with the OpenAI SDK; the arm that answered."""
        async with AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key=KEYS[key], max_retries=0
        ) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=list[Any](self.messages), extra_headers={"x-request-id": rid}
            )
        assert raw.headers["x-request-id"] == rid
        return raw.headers["x-adaptive-arm"]

    async def flush(self) -> None:
        runtime = self.app[LEARNING].runtime
        assert runtime is not None
        await runtime.log.flush()

    async def feedback(self, body: Any, key: str = MASTER) -> tuple[int, dict[str, Any]]:
        """``POST /v1/adaptive/feedback``; status and JSON body."""
        token = KEYS.get(key, key)
        async with self.session.post(
            f"{self.url}/v1/adaptive/feedback",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            return response.status, await response.json()

    async def learning(self, key: str = MASTER) -> tuple[int, dict[str, Any]]:
        token = KEYS.get(key, key)
        async with self.session.get(
            f"{self.url}/v1/adaptive/learning", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            return response.status, await response.json()


@asynccontextmanager
async def stack(tmp_path: Path, url: str, question: Record) -> AsyncIterator[Stack]:
    path = tmp_path / "outcomes.sqlite3"
    text = CONFIG.format(
        server=keyed_server(KEYS),
        upstreams=replay_upstreams(url, checker=False),
        store=path,
    )
    config = load_config_text(text, env=ENV)
    # Zero gain: the router answers with its cheap arm.
    predictor = HashPredictor(overrides={"": {"p_weak": 0.5, "p_strong": 0.5}})
    app = create_app(config, predictor=predictor, env=ENV)
    async with running(app) as proxy_url, aiohttp.ClientSession() as session:
        yield Stack(proxy_url, app, path, session, [dict(m) for m in question.messages])


async def test_feedback_after_the_record_was_written_is_joined_to_it(
    tmp_path: Path, replay_base_url: str, question: Record
) -> None:
    async with stack(tmp_path, replay_base_url, question) as s:
        arm = await s.chat("r-late")
        await s.flush()  # the record is in the store before its label arrives
        status, body = await s.feedback({"request_id": "r-late", "reward": 0.8}, key="team-a")
        assert (status, body) == (202, {"object": "adaptive.feedback", "accepted": 1})
        # A label for a record still queued is accepted too (the log looks there first).
        await s.chat("r-early")
        status, body = await s.feedback(
            {"request_id": "r-early", "arm_rewards": {"cheap": 0.0, "expensive": 1.0}}
        )
        assert (status, body["accepted"]) == (202, 1)
        await s.flush()
    reader = sqlite_store(s.store_path)
    try:
        late = await reader.get("r-late")
        early = await reader.get("r-early")
        totals = await reader.label_totals("router")
    finally:
        await reader.aclose()
    assert late.record is not None and late.record.key == "team-a"
    (label,) = late.labels
    assert (label.kind, label.reward, label.arm_rewards, label.key) == (
        "feedback",
        0.8,
        {},
        "team-a",
    )
    (label,) = early.labels
    assert label.arm_rewards == {"cheap": 0.0, "expensive": 1.0} and label.key == "master"
    assert totals == {"free": 0, "explored": 0, "feedback": 2}
    # The record names the arm that answered: the one a reward alone is about.
    assert arm == "cheap" and late.record.decision.arm == "cheap"


async def test_a_reward_alone_trains_only_the_arm_that_answered(
    tmp_path: Path, replay_base_url: str, question: Record
) -> None:
    async with stack(tmp_path, replay_base_url, question) as s:
        assert await s.chat("r-reward") == "cheap"
        assert (await s.feedback({"request_id": "r-reward", "reward": 1.0}))[0] == 202
        await s.flush()
        store = s.app[LEARNING].runtime.log.store  # type: ignore[union-attr]
        found = await store.get("r-reward")
    assert found.record is not None
    # The hash predictor computes no embedding: give the row one to see its targets.
    record = make_record("r-reward", predictions=found.record.predictions)
    record = record.model_copy(update={"decision": found.record.decision})
    spec = route_spec("router", cheap_output="p_weak", expensive_output="p_strong")
    examples = build_examples([Labelled(record, found.labels, "0")], spec, embedding_dim=DIM)
    assert examples.y.tolist() == [[1.0, 0.0]]
    assert examples.weight.tolist() == [[1.0, 0.0]]  # cheap observed; expensive not


async def test_feedback_is_refused_whole_and_named(
    tmp_path: Path, replay_base_url: str, question: Record
) -> None:
    async with stack(tmp_path, replay_base_url, question) as s:
        await s.chat("r-a", key="team-a")
        await s.chat("r-casc", key="team-a", model="casc")
        await s.flush()
        status, body = await s.feedback({"request_id": "r-nobody", "reward": 0.5})
        assert status == 404
        assert body["error"]["param"] == "request_id"
        assert body["error"]["code"] == "request_not_found"
        status, body = await s.feedback({"request_id": "r-a", "reward": 1.5})
        assert (status, body["error"]["param"]) == (400, "reward")
        assert body["error"]["type"] == "invalid_request_error"
        status, body = await s.feedback({"request_id": "r-a", "arm_rewards": {"medium": 1.0}})
        assert (status, body["error"]["param"]) == (400, "arm_rewards.medium")
        assert "cheap" in body["error"]["message"] and "expensive" in body["error"]["message"]
        # A cascade's arms are its stages, as x-adaptive-arm names them.
        status, _ = await s.feedback({"request_id": "r-casc", "arm_rewards": {"mixtral": 1.0}})
        assert status == 202
        status, body = await s.feedback({"request_id": "r-casc", "arm_rewards": {"cheap": 1.0}})
        assert (status, body["error"]["param"]) == (400, "arm_rewards.cheap")
        status, body = await s.feedback({"request_id": "r-a"})
        assert status == 400
        batch = [
            {"request_id": "r-a", "reward": 1.0},
            {"request_id": "r-a", "arm_rewards": {"cheap": -0.1}},
        ]
        status, body = await s.feedback({"feedback": batch})
        assert (status, body["error"]["param"]) == (400, "feedback[1].arm_rewards.cheap")
        status, body = await s.feedback({"feedback": [{"request_id": "r-a", "reward": 1}] * 4})
        assert (status, body["error"]["param"]) == (413, "feedback")
        # Another client's request: 403; the key's own and the master's are accepted.
        status, body = await s.feedback({"request_id": "r-a", "reward": 0.2}, key="team-b")
        assert (status, body["error"]["code"]) == (403, "permission_denied")
        status, body = await s.feedback(
            {"feedback": [{"request_id": "r-a", "reward": 0.3}] * 2}, key="team-a"
        )
        assert (status, body["accepted"]) == (202, 2)
        await s.flush()
        store = s.app[LEARNING].runtime.log.store  # type: ignore[union-attr]
        # Only what was accepted reached the store: the refused batches left nothing.
        assert len((await store.get("r-a")).labels) == 2
        kinds = [label.kind for label in (await store.get("r-casc")).labels]
        assert kinds.count("feedback") == 1


async def test_feedback_past_retention_is_gone(
    tmp_path: Path, replay_base_url: str, question: Record
) -> None:
    async with stack(tmp_path, replay_base_url, question) as s:
        writer = sqlite_store(s.store_path)
        try:
            # A request logged 40 days ago (retention 30), then trimmed as the log trims.
            old = make_record("r-old", unix_time_s=time.time() - 40 * 86_400, key="team-a")
            await writer.write([old])
            await writer.trim(time.time())
        finally:
            await writer.aclose()
        status, body = await s.feedback({"request_id": "r-old", "reward": 1.0}, key="team-a")
        assert (status, body["error"]["code"], body["error"]["param"]) == (
            410,
            "request_expired",
            "request_id",
        )


async def test_the_learning_report_is_the_master_keys(
    tmp_path: Path, replay_base_url: str, question: Record
) -> None:
    async with stack(tmp_path, replay_base_url, question) as s:
        await s.chat("r-1")
        await s.feedback({"request_id": "r-1", "reward": 1.0})
        await s.flush()
        status, body = await s.learning(key="team-a")
        assert (status, body["error"]["code"]) == (403, "permission_denied")
        status, body = await s.learning()
        config = s.app[LEARNING].runtime.config  # type: ignore[union-attr]
    assert status == 200
    assert list(body) == ["policies"]
    assert sorted(body["policies"]) == ["casc", "router"]
    router = body["policies"]["router"]
    assert sorted(router) == sorted(
        ["labels", "model_version", "promoted_at", "prequential", "explore_spend_usd"]
    )
    assert router["labels"] == {"free": 0, "explored": 0, "feedback": 1}
    # Nothing promoted: the shipped prior serves, named as such.
    assert router["model_version"] == prior_version(config)
    assert router["model_version"].startswith("hash-")
    assert (router["promoted_at"], router["prequential"], router["explore_spend_usd"]) == (
        None,
        {},
        0.0,
    )
