"""The replay upstream's ``/v1/responses``, driven by the openai SDK's ``client.responses``."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from proxy.wire.tokens import count_tokens
from recorded_data.records import MODEL_STRONG, MODEL_WEAK
from replay.store import ReplayStore
from tests.replay_helpers import record_by_id


async def test_a_response_is_the_recorded_answer(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    record = record_by_id(replay_store, "gsm8k/5")
    for model, arm in [(MODEL_WEAK, "weak"), (MODEL_STRONG, "strong")]:
        out = await client.responses.create(
            model=model, instructions="Be brief.", input=record.prompt
        )
        assert out.object == "response" and out.status == "completed" and out.model == model
        assert out.output_text == record.responses[arm]
        assert out.usage is not None
        assert out.usage.output_tokens == count_tokens(record.responses[arm])
        assert out.model_extra is not None and out.model_extra["replay"]["arm"] == arm


async def test_a_streamed_response_carries_the_same_text(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    record = record_by_id(replay_store, "gsm8k/5")
    events: list[Any] = []
    stream = await client.responses.create(model=MODEL_WEAK, input=record.prompt, stream=True)
    async for event in stream:
        events.append(event)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") > 1
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == record.responses["weak"] == events[-1].response.output_text


async def test_previous_response_id_continues_a_stored_conversation(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    t1, t2 = (
        record_by_id(replay_store, "mtbench/85/t1"),
        record_by_id(replay_store, "mtbench/85/t2"),
    )
    first = await client.responses.create(model=MODEL_STRONG, input=t1.prompt)
    assert first.output_text == t1.responses["strong"]
    second = await client.responses.create(
        model=MODEL_STRONG, previous_response_id=first.id, input=t2.prompt
    )
    assert second.output_text == t2.responses["strong"]
    unstored = await client.responses.create(model=MODEL_STRONG, input=t1.prompt, store=False)
    for missing in (unstored.id, "resp_unknown"):
        with pytest.raises(openai.NotFoundError) as refused:
            await client.responses.create(
                model=MODEL_STRONG, previous_response_id=missing, input=t2.prompt
            )
        assert refused.value.code == "previous_response_not_found"


async def test_an_effort_level_without_a_recording_is_404_never_an_answer(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    record = record_by_id(replay_store, "gsm8k/5")
    with pytest.raises(openai.NotFoundError) as responses:
        await client.responses.create(
            model=MODEL_WEAK, input=record.prompt, reasoning={"effort": "high"}
        )
    with pytest.raises(openai.NotFoundError) as chat:
        await client.chat.completions.create(
            model=MODEL_WEAK,
            messages=[{"role": "user", "content": record.prompt}],
            reasoning_effort="low",
        )
    for error, param in ((responses.value, "reasoning.effort"), (chat.value, "reasoning_effort")):
        assert error.code == "effort_not_recorded"
        assert error.param == param
    # Without an effort the same prompt is served.
    out = await client.responses.create(model=MODEL_WEAK, input=record.prompt, reasoning=None)
    assert out.output_text == record.responses["weak"]
