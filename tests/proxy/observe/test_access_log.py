"""Request ids and the access log, end to end through the OpenAI SDK."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from proxy.config.schema import load_config_text
from proxy.http.app import create_app
from recorded_data.records import MODEL_STRONG, MODEL_WEAK
from replay.store import ReplayStore
from tests.proxy.http.test_app import make_config, steering
from tests.replay_helpers import record_by_id
from tests.servers import running


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "adaptive_proxy.access"]


def question(store: ReplayStore, prompt_id: str) -> list[Any]:
    rec = record_by_id(store, prompt_id)
    return [dict(m) for m in rec.messages]


async def test_one_json_line_per_request_with_its_id_and_no_content(
    replay_base_url: str, replay_store: ReplayStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adaptive_proxy.access")
    messages = question(replay_store, "gsm8k/0")
    async with running(create_app(make_config(replay_base_url), predictor=steering())) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="auto", messages=messages, extra_headers={"x-request-id": "req-42"}
            )
            fresh = await client.chat.completions.with_raw_response.create(
                model="auto", messages=messages, stream=True
            )
            async for _ in fresh.parse():
                pass
            with pytest.raises(openai.NotFoundError) as missing:
                await client.chat.completions.create(model="no-such-model", messages=messages)
    assert raw.headers["x-request-id"] == "req-42"
    generated = fresh.headers["x-request-id"]
    assert len(generated) == 32 and generated != "req-42"
    assert missing.value.response.headers["x-request-id"]
    first, streamed, failed = access_lines(caplog)
    completion = raw.parse()
    assert completion.usage is not None
    assert first["request_id"] == "req-42" and first["status"] == 200
    assert (first["policy"], first["arm"], first["n"], first["choices"]) == (
        "auto",
        "expensive",
        1,
        1,
    )
    assert first["cache"] == "miss" and streamed["cache"] == "hit"
    assert first["prompt_tokens"] == completion.usage.prompt_tokens
    assert first["completion_tokens"] == completion.usage.completion_tokens
    assert first["cost_usd"] == pytest.approx(
        (completion.model_extra or {})["adaptive"]["cost_usd"]
    )
    assert first["latency_ms"] >= first["upstream_latency_ms"] > 0
    assert first["key"] is None and first["upstream"] == "gpt-4"
    assert streamed["request_id"] == generated and streamed["completion_tokens"] > 0
    assert failed["status"] == 404 and failed["policy"] is None
    assert "messages" not in first
    assert messages[0]["content"][:30] not in caplog.text


async def test_messages_are_logged_only_when_asked_for(
    replay_base_url: str, replay_store: ReplayStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adaptive_proxy.access")
    text = f"""
server: {{access_log: {{include_messages: true}}}}
upstreams:
  mixtral: {{base_url: "{replay_base_url}", model: "{MODEL_WEAK}"}}
  gpt-4: {{base_url: "{replay_base_url}", model: "{MODEL_STRONG}"}}
"""
    messages = question(replay_store, "gsm8k/1")
    async with running(create_app(load_config_text(text, env={}), predictor=None)) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
            await client.chat.completions.create(model=MODEL_WEAK, messages=messages)
    (line,) = access_lines(caplog)
    assert line["messages"] == messages and line["arm"] == "passthrough"


async def test_concurrent_requests_each_get_their_line_once_they_are_answered(
    replay_base_url: str, replay_store: ReplayStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Lines are logged together, a loop turn after their requests end: none may be lost or
    # doubled, and each is in the log by the time its client holds the answer.
    caplog.set_level(logging.INFO, logger="adaptive_proxy.access")
    messages = question(replay_store, "gsm8k/2")
    text = f"""
upstreams:
  mixtral: {{base_url: "{replay_base_url}", model: "{MODEL_WEAK}"}}
"""
    ids = [f"batch-{i}" for i in range(24)]
    async with running(create_app(load_config_text(text, env={}), predictor=None)) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:

            async def one(request_id: str) -> None:
                await client.chat.completions.create(
                    model=MODEL_WEAK, messages=messages, extra_headers={"x-request-id": request_id}
                )

            await asyncio.gather(*(one(i) for i in ids))
            answered = sorted(line["request_id"] for line in access_lines(caplog))
            await client.chat.completions.create(
                model=MODEL_WEAK, messages=messages, extra_headers={"x-request-id": "last"}
            )
            assert access_lines(caplog)[-1]["request_id"] == "last"
    assert answered == sorted(ids)
    assert [line["request_id"] for line in access_lines(caplog)].count("last") == 1
