"""Multi-sample models and ``POST /v1/verify`` of the replay upstream, through real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from proxy.execute.rerank_text import render_conversation
from proxy.wire.tokens import count_message_tokens, count_tokens
from recorded_data.multisample import MultiSampleSuite, load_multisample
from replay.multisample import (
    GAME24_VERIFIER,
    ORACLE_VERIFIER,
    MultiSampleStore,
    build_multisample_store,
)
from replay.server import create_replay_app
from replay.store import ReplayStore


@pytest.fixture(scope="module")
def multisample_store(data_dir: Path) -> MultiSampleStore:
    store = build_multisample_store(data_dir)
    assert store is not None
    return store


@pytest.fixture
async def base_url(
    replay_store: ReplayStore, multisample_store: MultiSampleStore
) -> AsyncIterator[str]:
    app = create_replay_app(replay_store, multisample=multisample_store)
    server = TestServer(app, port=0)
    await server.start_server()
    try:
        yield str(server.make_url("/v1"))
    finally:
        await server.close()


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def humaneval(data_dir: Path) -> MultiSampleSuite:
    return load_multisample(data_dir, "humaneval-codegen16b")


def _msgs(suite: MultiSampleSuite, i: int) -> Any:
    return [dict(m) for m in suite.prompts[i].messages]


async def test_n_samples_without_replacement_deterministic_per_seed(
    client: AsyncOpenAI, humaneval: MultiSampleSuite
) -> None:
    prompt = humaneval.prompts[3]
    model = "humaneval-codegen16b"

    async def draw(seed: int) -> list[str]:
        out = await client.chat.completions.create(
            model=model, messages=_msgs(humaneval, 3), n=16, seed=seed
        )
        assert out.model_extra is not None
        arms = out.model_extra["replay"]["arms"]
        assert out.model_extra["replay"]["prompt_id"] == prompt.prompt_id
        indices = [int(a.removeprefix("sample-")) for a in arms]
        assert len(set(indices)) == 16  # without replacement
        texts = [c.message.content or "" for c in out.choices]
        assert texts == [prompt.texts[j] for j in indices]
        assert out.usage is not None
        assert out.usage.completion_tokens == sum(count_tokens(t) for t in texts)
        assert out.usage.prompt_tokens == count_message_tokens(_msgs(humaneval, 3))
        return [str(j) for j in indices]

    first, again, other = await draw(7), await draw(7), await draw(8)
    assert first == again
    assert first != other


async def test_consecutive_seeds_continue_one_draw_without_replacement(
    client: AsyncOpenAI, humaneval: MultiSampleSuite
) -> None:
    """Seed s with n = 3, then seed s + 3: the second request continues the first's draw (the
    proxy moves its seed on by the samples drawn across sequential rounds)."""

    async def arms(seed: int, n: int) -> list[str]:
        out = await client.chat.completions.create(
            model="humaneval-codegen16b", messages=_msgs(humaneval, 5), n=n, seed=seed
        )
        assert out.model_extra is not None
        return list(out.model_extra["replay"]["arms"])

    whole = await arms(40, 8)
    parts = await arms(40, 3) + await arms(43, 1) + await arms(44, 4)
    assert parts == whole
    assert len(set(whole)) == 8


async def test_n_above_the_recorded_samples_is_a_400(
    client: AsyncOpenAI, humaneval: MultiSampleSuite
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(
            model="humaneval-codegen16b", messages=_msgs(humaneval, 0), n=101
        )
    assert "n" in str(err.value)


async def test_models_lists_the_multisample_suites(client: AsyncOpenAI) -> None:
    ids = {m.id async for m in client.models.list()}
    assert {"humaneval-codegen16b", "game24-gpt4-standard", "game24-gpt4-cot"} <= ids


async def test_verify_scores_game24_with_the_checker(base_url: str, data_dir: Path) -> None:
    suite = load_multisample(data_dir, "game24-gpt4-cot")
    prompt = next(p for p in suite.prompts if 0 < sum(p.correct) < len(p.correct))
    query = render_conversation(list(prompt.messages))
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base_url}/verify", json={"query": query, "candidates": list(prompt.texts)}
        ) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["verifier"] == GAME24_VERIFIER
    assert body["scores"] == [float(c) for c in prompt.correct]


async def test_verify_humaneval_is_the_labelled_oracle(
    base_url: str, humaneval: MultiSampleSuite
) -> None:
    prompt = next(p for p in humaneval.prompts if 0 < sum(p.correct) < len(p.correct))
    query = render_conversation(list(prompt.messages))
    candidates = [*prompt.texts[:10], "    return None  # never recorded\n"]
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base_url}/verify", json={"query": query, "candidates": candidates}
        ) as resp:
            body = await resp.json()
        async with session.post(
            f"{base_url}/verify", json={"query": "hello", "candidates": ["x"]}
        ) as missing:
            assert missing.status == 404
            assert (await missing.json())["error"]["code"] == "prompt_not_found"
        async with session.post(f"{base_url}/verify", json={"query": 3}) as bad:
            assert bad.status == 400
    assert body["verifier"] == ORACLE_VERIFIER
    assert body["scores"] == [*(float(c) for c in prompt.correct[:10]), 0.0]
