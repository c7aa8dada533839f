"""The proxy end to end: the official OpenAI SDK → proxy → replay upstream of recorded answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from predictor_onnx.runtime import OnnxPredictor
from proxy.config.schema import Config, load_config_text
from proxy.decide.prediction import HashPredictor, Messages
from proxy.http.app import create_app
from proxy.http.state import PREDICTOR
from recorded_data.records import MODEL_STRONG, MODEL_WEAK, Record
from replay.store import ReplayStore
from tests.redis_server import RedisServer
from tests.replay_helpers import record_by_id as record
from tests.servers import running

HARD = "Janet’s ducks lay 16 eggs"  # steered to the expensive arm
POLICY = """
upstreams:
  mixtral: {{base_url: "{url}", model: "{weak}",
            price_in_per_mtok_usd: 0.6, price_out_per_mtok_usd: 0.6}}
  gpt-4: {{base_url: "{url}", model: "{strong}",
          price_in_per_mtok_usd: 10, price_out_per_mtok_usd: 30}}
policies:
  auto: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.1}}
cache: {{redis_url: {redis}, timeout_s: 0.2}}
"""


def make_config(url: str, redis_url: str | None = None) -> Config:
    text = POLICY.format(
        url=url,
        weak=MODEL_WEAK,
        strong=MODEL_STRONG,
        redis=f'"{redis_url}"' if redis_url else "null",
    )
    return load_config_text(text, env={})


def steering() -> HashPredictor:
    return HashPredictor(
        {HARD: {"p_weak": 0.2, "p_strong": 0.9}, "": {"p_weak": 0.8, "p_strong": 0.82}}
    )


class FailingPredictor:
    """A predictor whose model is broken: every prediction raises."""

    output_names = ("gain",)

    async def predict(self, batch: Sequence[Messages]) -> list[dict[str, float]]:
        raise RuntimeError("model exploded")

    async def aclose(self) -> None:
        return None


def msgs(rec: Record) -> list[Any]:
    return [dict(m) for m in rec.messages]


@pytest.fixture
async def proxy_url(replay_base_url: str) -> AsyncIterator[str]:
    async with running(create_app(make_config(replay_base_url), predictor=steering())) as url:
        yield url


@pytest.fixture
async def client(proxy_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0) as c:
        yield c


async def test_routes_by_prediction_and_shows_the_decision(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    hard, easy = record(replay_store, "gsm8k/0"), record(replay_store, "gsm8k/1")
    raw = await client.chat.completions.with_raw_response.create(model="auto", messages=msgs(hard))
    completion = raw.parse()
    assert completion.model == MODEL_STRONG
    assert completion.choices[0].message.content == hard.responses["strong"]
    assert raw.headers["x-adaptive-policy"] == "auto"
    assert raw.headers["x-adaptive-arm"] == "expensive"
    assert raw.headers["x-adaptive-n"] == "1"
    assert raw.headers["x-adaptive-cache"] == "miss"
    assert float(raw.headers["x-adaptive-decision-ms"]) >= 0
    adaptive = (completion.model_extra or {})["adaptive"]
    assert adaptive["gain"] == pytest.approx(0.7)
    assert adaptive["predictions"]["p_strong"] == pytest.approx(0.9)
    assert adaptive["threshold"] == 0.1 and adaptive["arm"] == "expensive"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert adaptive["cost_usd"] == pytest.approx(
        (completion.usage.prompt_tokens * 10 + completion.usage.completion_tokens * 30) / 1e6
    )

    cheap = await client.chat.completions.create(model="auto", messages=msgs(easy))
    assert cheap.model == MODEL_WEAK
    assert (cheap.model_extra or {})["adaptive"]["arm"] == "cheap"


async def test_repeat_is_a_cache_hit_but_a_different_history_is_not(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    rec = record(replay_store, "mtbench/81/t2")
    first = await client.chat.completions.with_raw_response.create(model="auto", messages=msgs(rec))
    again = await client.chat.completions.with_raw_response.create(model="auto", messages=msgs(rec))
    assert (first.headers["x-adaptive-cache"], again.headers["x-adaptive-cache"]) == ("miss", "hit")
    other_history = msgs(rec)
    other_history[1] = {"role": "assistant", "content": "A different first answer."}
    third = await client.chat.completions.with_raw_response.create(
        model="auto", messages=other_history
    )
    assert third.headers["x-adaptive-cache"] == "miss"
    assert third.parse().choices[0].message.content  # replay keys turn 2 on the user turns


async def test_streaming_carries_the_decision_and_usage(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    rec = record(replay_store, "gsm8k/0")
    stream = await client.chat.completions.create(
        model="auto", messages=msgs(rec), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert (chunks[0].model_extra or {})["adaptive"]["arm"] == "expensive"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == rec.responses["strong"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    plain = await client.chat.completions.create(model="auto", messages=msgs(rec), stream=True)
    assert all(c.usage is None for c in [c async for c in plain])


async def test_multi_part_content_and_passthrough_model(
    client: AsyncOpenAI, replay_store: ReplayStore
) -> None:
    rec = record(replay_store, "gsm8k/3")
    parts = [{"role": "user", "content": [{"type": "text", "text": rec.messages[-1]["content"]}]}]
    routed = await client.chat.completions.create(model="auto", messages=parts)  # type: ignore[arg-type]
    assert routed.choices[0].message.content in (rec.responses["weak"], rec.responses["strong"])
    direct = await client.chat.completions.with_raw_response.create(
        model=MODEL_WEAK, messages=msgs(rec)
    )
    assert direct.parse().choices[0].message.content == rec.responses["weak"]
    assert direct.headers["x-adaptive-arm"] == "passthrough"


async def test_errors_are_openai_shaped(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        await client.chat.completions.create(
            model="no-such-policy", messages=[{"role": "user", "content": "hi"}]
        )
    assert nf.value.code == "model_not_found"
    wizard: Any = [{"role": "wizard", "content": "x"}]  # not a role the SDK's types allow
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="auto", messages=wizard)
    error_body: Any = bad.value.body or {}
    assert error_body.get("param") == "messages[0].role"
    with pytest.raises(openai.NotFoundError) as unknown_prompt:
        await client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "never recorded"}]
        )
    assert unknown_prompt.value.code == "prompt_not_found"  # the upstream's 404 passes through


async def test_decide_calls_no_upstream(replay_store: ReplayStore) -> None:
    config = make_config("http://127.0.0.1:9/v1")  # nothing listens there
    rec = record(replay_store, "gsm8k/0")
    async with (
        running(create_app(config, predictor=steering())) as url,
        aiohttp.ClientSession() as s,
    ):
        async with s.post(
            f"{url}/v1/adaptive/decide", json={"model": "auto", "messages": msgs(rec)}
        ) as r:
            assert r.status == 200
            body = await r.json()
    assert body["arm"] == "expensive" and body["upstream"] == "gpt-4"
    assert body["threshold"] == 0.1 and body["cache"] == "miss"
    assert body["gain"] == pytest.approx(0.7) and "p_weak" in body["predictions"]


async def test_broken_predictor_falls_back_to_the_default_arm(
    replay_base_url: str, replay_store: ReplayStore
) -> None:
    app = create_app(make_config(replay_base_url), predictor=FailingPredictor())
    rec = record(replay_store, "gsm8k/0")
    async with (
        running(app) as url,
        AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as c,
    ):
        out = await c.chat.completions.create(model="auto", messages=msgs(rec))
        assert out.model == MODEL_WEAK
        assert (out.model_extra or {})["adaptive"]["fallback_reason"] == "RuntimeError"
        async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as r:
            text = await r.text()
    assert 'adaptive_predictor_fallbacks_total{policy="auto",reason="RuntimeError"} 1.0' in text


async def test_redis_cache_survives_an_outage(
    replay_base_url: str, replay_store: ReplayStore, redis_server: RedisServer
) -> None:
    app = create_app(make_config(replay_base_url, redis_server.url), predictor=steering())
    rec = record(replay_store, "gsm8k/0")

    async def cache_header(c: AsyncOpenAI) -> str:
        raw = await c.chat.completions.with_raw_response.create(model="auto", messages=msgs(rec))
        assert raw.parse().model == MODEL_STRONG  # the answer never depends on the cache
        return raw.headers["x-adaptive-cache"]

    async with (
        running(app) as url,
        AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as c,
    ):
        assert [await cache_header(c), await cache_header(c)] == ["miss", "hit"]
        redis_server.kill()
        for _ in range(3):
            await cache_header(c)  # requests keep succeeding without Redis
        async with aiohttp.ClientSession() as s, s.get(f"{url}/health/readiness") as r:
            assert r.status == 200 and "degraded" in (await r.json())["cache"]["status"]
        redis_server.restart()  # an empty Redis: the next request misses, then hits again
        seen = [await cache_header(c) for _ in range(40)]
        assert "hit" in seen[seen.index("miss") + 1 :] if "miss" in seen else "hit" in seen
        async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as r:
            assert "adaptive_cache_errors_total" in await r.text()


async def test_models_and_health(proxy_url: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{proxy_url}/v1/models") as r:
            ids = [m["id"] for m in (await r.json())["data"]]
        assert ids[0] == "auto" and MODEL_WEAK in ids and MODEL_STRONG in ids
        async with s.get(f"{proxy_url}/health/liveness") as r:
            assert r.status == 200
        async with s.get(f"{proxy_url}/health/readiness") as r:
            ready = await r.json()
            assert r.status == 200 and ready["status"] == "ready"
            assert ready["cache"] == {"backend": "lru", "status": "ok"}


async def test_the_predictor_is_warm_when_readiness_turns_200(replay_base_url: str) -> None:
    # One real inference ran before the proxy reported ready, so no request pays the first.
    app = create_app(make_config(replay_base_url))  # the shipped ONNX predictor
    async with running(app) as url:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/health/readiness") as r:
            assert r.status == 200
        predictor = app[PREDICTOR]
        assert isinstance(predictor, OnnxPredictor)
        assert predictor.batches_run == 1
