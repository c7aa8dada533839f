"""The replay upstream, driven through the official OpenAI SDK against a real server."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from proxy.wire.tokens import count_message_tokens, count_tokens
from recorded_data.records import MODEL_STRONG, MODEL_WEAK, Record
from replay.server import register_cli
from replay.store import POOL_ARMS, ReplayStore
from tests.replay_helpers import record_by_id


def _msgs(record: Record) -> Any:
    return [dict(m) for m in record.messages]


async def test_gsm8k_answer_is_the_recorded_text(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    record = record_by_id(replay_store, "gsm8k/5")
    for model, arm in [
        (MODEL_WEAK, "weak"),
        (MODEL_STRONG, "strong"),
        ("gsm8k-175b-verification", "175b_verification"),
    ]:
        out = await client.chat.completions.create(model=model, messages=_msgs(record))
        assert out.object == "chat.completion" and out.model == model
        assert out.choices[0].message.content == record.responses[arm]
        assert out.choices[0].finish_reason == "stop"
        assert out.usage is not None
        assert out.usage.prompt_tokens == count_message_tokens(_msgs(record))
        assert out.usage.completion_tokens == count_tokens(record.responses[arm])
        assert out.model_extra is not None
        assert out.model_extra["replay"]["prompt_id"] == "gsm8k/5"
        assert out.model_extra["replay"]["arm"] == arm


async def test_lookup_normalises_whitespace_and_text_parts(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    record = record_by_id(replay_store, "gsm8k/7")
    words = record.prompt.split()
    parts = [
        {"type": "text", "text": "  " + " ".join(words[:3]) + "\n"},
        {"type": "text", "text": "\t".join(words[3:]) + "  "},
    ]
    messages: Any = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": parts},
    ]
    out = await client.chat.completions.create(model=MODEL_WEAK, messages=messages)
    assert out.choices[0].message.content == record.responses["weak"]


async def test_mtbench_turn_two_keyed_on_user_turns(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    t1 = record_by_id(replay_store, "mtbench/85/t1")
    t2 = record_by_id(replay_store, "mtbench/85/t2")
    first = await client.chat.completions.create(model=MODEL_WEAK, messages=_msgs(t1))
    assert first.choices[0].message.content == t1.responses["weak"]
    # Any history works: here Mixtral's own turn-1 answer instead of the recorded GPT-4 one.
    history: Any = [
        t2.messages[0],
        {"role": "assistant", "content": t1.responses["weak"]},
        t2.messages[2],
    ]
    for model, arm in [(MODEL_WEAK, "weak"), (MODEL_STRONG, "strong")]:
        out = await client.chat.completions.create(model=model, messages=history)
        assert out.choices[0].message.content == t2.responses[arm]
        assert out.choices[0].message.content != t1.responses[arm]
        assert out.model_extra is not None
        assert out.model_extra["replay"]["prompt_id"] == "mtbench/85/t2"


async def test_mmlu_replays_the_recorded_outcome(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    mmlu = [r for r in replay_store.records() if r.dataset == "mmlu"]
    record = next(r for r in mmlu if r.rewards["weak"] == 0.0 and r.rewards["strong"] == 1.0)
    weak = await client.chat.completions.create(model=MODEL_WEAK, messages=_msgs(record))
    strong = await client.chat.completions.create(model=MODEL_STRONG, messages=_msgs(record))
    prefix = "[replay] recorded outcome for this MMLU question: "
    assert weak.choices[0].message.content == prefix + "incorrect"
    assert strong.choices[0].message.content == prefix + "correct"


async def test_pool_draws_distinct_recorded_solutions(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    record = record_by_id(replay_store, "gsm8k/11")
    out = await client.chat.completions.create(
        model="gsm8k-pool", messages=_msgs(record), n=3, seed=7
    )
    texts = [c.message.content for c in out.choices]
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert out.model_extra is not None
    arms = out.model_extra["replay"]["arms"]
    assert len(set(arms)) == 3
    assert texts == [record.responses[arm] for arm in arms]
    again = await client.chat.completions.create(
        model="gsm8k-pool", messages=_msgs(record), n=3, seed=7
    )
    assert [c.message.content for c in again.choices] == texts
    many = await client.chat.completions.create(model="gsm8k-pool", messages=_msgs(record), n=8)
    assert many.model_extra is not None
    drawn = many.model_extra["replay"]["arms"]
    assert set(drawn[:6]) == set(POOL_ARMS) and set(drawn) <= set(POOL_ARMS)


async def test_streaming_reassembles_with_usage(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    record = record_by_id(replay_store, "gsm8k/20")
    stream = await client.chat.completions.create(
        model=MODEL_STRONG,
        messages=_msgs(record),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 3
    assert "".join(pieces) == record.responses["strong"]
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "stop" and finals.count("stop") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == count_tokens(record.responses["strong"])
    assert all(c.usage is None for c in chunks[:-1])


async def test_streaming_n_and_without_usage(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    record = record_by_id(replay_store, "mtbench/90/t1")
    stream = await client.chat.completions.create(
        model=MODEL_WEAK, messages=_msgs(record), stream=True, n=2
    )
    texts = ["", ""]
    async for chunk in stream:
        assert chunk.usage is None
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == [record.responses["weak"]] * 2


async def test_unknown_prompt_and_model_are_404(client: AsyncOpenAI) -> None:
    messages: Any = [{"role": "user", "content": "A prompt nobody ever recorded."}]
    with pytest.raises(openai.NotFoundError) as prompt_err:
        await client.chat.completions.create(model=MODEL_WEAK, messages=messages)
    assert prompt_err.value.code == "prompt_not_found"
    with pytest.raises(openai.NotFoundError) as model_err:
        await client.chat.completions.create(model="gpt-5-imaginary", messages=messages)
    assert model_err.value.code == "model_not_found"


async def test_pool_rejects_non_gsm8k_prompt(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    record = record_by_id(replay_store, "mtbench/90/t1")
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(model="gsm8k-pool", messages=_msgs(record))
    assert err.value.code == "prompt_not_found"


async def test_models_listed(client: AsyncOpenAI) -> None:
    ids = {m.id async for m in client.models.list()}
    assert {
        MODEL_WEAK,
        MODEL_STRONG,
        "gsm8k-6b-finetuning",
        "gsm8k-6b-verification",
        "gsm8k-175b-finetuning",
        "gsm8k-175b-verification",
        "gsm8k-pool",
    } == ids


async def test_bad_json_and_bad_fields_are_400(replay_base_url: str) -> None:
    url = replay_base_url + "/chat/completions"
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url, data=b"{not json", headers={"content-type": "application/json"}
        ) as resp:
            assert resp.status == 400
            body = await resp.json()
            assert body["error"]["type"] == "invalid_request_error"
            assert set(body["error"]) == {"message", "type", "param", "code"}
        async with session.post(url, json={"model": MODEL_WEAK, "messages": []}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "messages"


def test_cli_registers_replay_upstream(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    args = parser.parse_args(["replay-upstream", "--port", "0", "--data-dir", str(tmp_path)])
    assert (args.host, args.port, args.ttft_ms, args.per_token_ms) == ("127.0.0.1", 0, 0.0, 0.0)
    # An empty data dir is reported as an exit code, never served.
    assert args.func(args) == 2
