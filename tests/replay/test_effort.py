"""The scripted effort upstream, and ``config.example.yaml``'s ``effort-ladder`` on it."""

from __future__ import annotations

from pathlib import Path

from openai import AsyncOpenAI

from proxy.config.schema import load_config
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from replay.effort import SCRIPTED_REASONING_TOKENS, create_effort_app
from tests.servers import running

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


async def test_the_script_answers_by_effort_and_reports_reasoning_tokens() -> None:
    async with (
        running(create_effort_app()) as url,
        AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
    ):
        answer = await client.chat.completions.create(
            model="scripted-effort",
            messages=[{"role": "user", "content": "hi"}],
            reasoning_effort="high",
        )
        stream = await client.chat.completions.create(
            model="scripted-effort",
            messages=[{"role": "user", "content": "hi"}],
            reasoning_effort="low",
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    assert answer.choices[0].message.content == "scripted answer at reasoning effort high"
    assert answer.usage is not None and answer.usage.completion_tokens_details is not None
    assert (
        answer.usage.completion_tokens_details.reasoning_tokens == SCRIPTED_REASONING_TOKENS["high"]
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "scripted answer at reasoning effort low"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == SCRIPTED_REASONING_TOKENS["low"]


async def test_the_example_effort_ladder_sends_each_arm_at_its_effort() -> None:
    predictor = HashPredictor(
        {
            "hard": {"p_weak": 0.1, "p_strong": 0.95, "gain": 0.3},
            "easy": {"p_weak": 0.9, "p_strong": 0.91, "gain": 0.2},
        }
    )
    async with running(create_effort_app()) as effort_url:
        env = {"EFFORT_BASE_URL": f"{effort_url}/v1"}
        example = load_config(EXAMPLE, env=env)
        # Only the effort ladder: the hash predictor lacks the other policies' outputs.
        config = example.model_copy(
            update={"policies": {"effort-ladder": example.policies["effort-ladder"]}}
        )
        async with (
            running(create_app(config, predictor=predictor)) as url,
            AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
        ):
            answers = {}
            for prompt in ("hard: prove it", "easy: say hi"):
                raw = await client.chat.completions.with_raw_response.create(
                    model="effort-ladder", messages=[{"role": "user", "content": prompt}]
                )
                answers[prompt] = (raw.headers["x-adaptive-arm"], raw.parse())
    arm, hard = answers["hard: prove it"]
    assert arm == "deep"
    assert hard.choices[0].message.content == "scripted answer at reasoning effort high"
    arm, easy = answers["easy: say hi"]
    assert arm == "quick"
    assert easy.choices[0].message.content == "scripted answer at reasoning effort low"
