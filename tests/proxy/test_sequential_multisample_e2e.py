"""``config.example.yaml``'s sequential best-of-k (``code-sequential``) on the replay upstream's
multi-sample HumanEval model, its verifier the replay's ``/v1/verify``, through the OpenAI SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from openai import AsyncOpenAI

from proxy.config.schema import load_config
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from recorded_data.multisample import MultiSamplePrompt, MultiSampleSuite, load_multisample
from replay.multisample import build_multisample_store
from replay.server import create_replay_app
from replay.store import ReplayStore
from tests.servers import running

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
CAP = 16  # code-sequential's n_max


@pytest.fixture(scope="module")
def humaneval(data_dir: Path) -> MultiSampleSuite:
    return load_multisample(data_dir, "humaneval-codegen16b")


@pytest.fixture
def sampled() -> list[tuple[Any, list[str]]]:
    """``(seed, texts)`` of every chat completion the replay upstream answered, in order."""
    return []


@pytest.fixture
async def client(
    replay_store: ReplayStore, data_dir: Path, sampled: list[tuple[Any, list[str]]]
) -> AsyncIterator[AsyncOpenAI]:
    replay = create_replay_app(replay_store, multisample=build_multisample_store(data_dir))

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.path == "/v1/chat/completions" and isinstance(response, web.Response):
            assert isinstance(response.body, bytes)
            texts = [c["message"]["content"] for c in orjson.loads(response.body)["choices"]]
            sampled.append(((await request.json()).get("seed"), texts))
        return response

    replay.middlewares.append(record)
    async with running(replay) as replay_url:
        config = load_config(EXAMPLE, env={"REPLAY_BASE_URL": f"{replay_url}/v1"})
        # Every output the example's policies read (the loader checks them all).
        arms = ("weak", "strong", "6b_finetuning", "175b_finetuning", "175b_verification")
        app = create_app(config, predictor=HashPredictor(arms=arms))
        async with (
            running(app) as url,
            AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as c,
        ):
            yield c


def _prompt(suite: MultiSampleSuite, low: float, high: float) -> MultiSamplePrompt:
    return next(p for p in suite.prompts if low <= sum(p.correct) / len(p.correct) <= high)


def _msgs(prompt: MultiSamplePrompt) -> Any:
    return [dict(m) for m in prompt.messages]


async def test_the_example_stops_at_the_first_sample_the_tests_pass(
    client: AsyncOpenAI, humaneval: MultiSampleSuite
) -> None:
    prompt = _prompt(humaneval, 0.3, 0.7)
    raw = await client.chat.completions.with_raw_response.create(
        model="code-sequential", messages=_msgs(prompt), seed=11
    )
    completion = raw.parse()
    adaptive = (completion.model_extra or {})["adaptive"]
    correct = dict(zip(prompt.texts, prompt.correct, strict=True))
    if adaptive["stopped_by"] == "verifier":
        assert correct[completion.choices[0].message.content or ""]
        scores = [c["verifier_score"] for c in adaptive["candidates"]]
        assert scores[-1] == 1.0 and all(s == 0.0 for s in scores[:-1])
    else:  # 16 failing draws of a prompt that passes 30-70% of the time: (0.7)^16 < 0.4%
        assert adaptive["stopped_by"] == "cap" and adaptive["samples_drawn"] == CAP
    assert int(raw.headers["x-adaptive-n"]) == adaptive["samples_drawn"] == adaptive["rounds"]


async def test_rounds_of_a_seeded_request_never_repeat_a_sample(
    client: AsyncOpenAI, humaneval: MultiSampleSuite, sampled: list[tuple[Any, list[str]]]
) -> None:
    """A prompt whose every sample fails runs to the cap: 16 rounds of one sample, each its own
    recorded sample (one seed for every round would replay the first sample 16 times)."""
    prompt = _prompt(humaneval, 0.0, 0.0)
    completion = await client.chat.completions.create(
        model="code-sequential", messages=_msgs(prompt), seed=11
    )
    adaptive = (completion.model_extra or {})["adaptive"]
    assert adaptive["stopped_by"] == "cap"
    assert adaptive["samples_drawn"] == adaptive["rounds"] == CAP
    # Round r carries seed 11 + r (the samples requested before it) and draws a new sample.
    assert [seed for seed, _ in sampled] == list(range(11, 11 + CAP))
    texts = [text for _, round_texts in sampled for text in round_texts]
    assert len(texts) == len(set(texts)) == CAP and set(texts) <= set(prompt.texts)
    assert completion.choices[0].message.content in texts
