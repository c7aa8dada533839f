"""``server.auth`` end to end: the OpenAI SDK → two proxy replicas → replay upstream, one Redis."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import pytest
from openai import AsyncOpenAI

from proxy.config.schema import Config, load_config, load_config_text
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from proxy.http.state import CONFIG
from recorded_data.records import MODEL_STRONG, MODEL_WEAK
from replay.store import ReplayStore
from tests.redis_server import RedisServer
from tests.replay_helpers import record_by_id
from tests.servers import running

MASTER = "sk-master-0123456789"
TEAM_KEY = "sk-team-a-0123456789"
INTERN_KEY = "sk-intern-0123456789"
ENV = {"ADAPTIVE_MASTER_KEY": MASTER}
HARD = "Janet’s ducks lay 16 eggs"

POLICY = """
server:
  auth:
    master_key_envs: [ADAPTIVE_MASTER_KEY]
    key_cache_ttl_s: 0
    keys:
      team-a:
        key_sha256: "{team_sha}"
        models: [auto]
        spend_limit_usd_per_day: 0.001
      intern:
        key_sha256: "{intern_sha}"
        requests_per_minute: 2
upstreams:
  mixtral: {{base_url: "{url}", model: "{weak}",
            price_in_per_mtok_usd: 0.6, price_out_per_mtok_usd: 0.6}}
  gpt-4: {{base_url: "{url}", model: "{strong}",
          price_in_per_mtok_usd: 10, price_out_per_mtok_usd: 30}}
policies:
  auto: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.1}}
cache: {{redis_url: "{redis}", timeout_s: 0.2}}
"""


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def auth_config(upstream_url: str, redis_url: str) -> Config:
    text = POLICY.format(
        url=upstream_url,
        weak=MODEL_WEAK,
        strong=MODEL_STRONG,
        redis=redis_url,
        team_sha=sha(TEAM_KEY),
        intern_sha=sha(INTERN_KEY),
    )
    return load_config_text(text, env=ENV)


def steering() -> HashPredictor:
    return HashPredictor(
        {HARD: {"p_weak": 0.2, "p_strong": 0.9}, "": {"p_weak": 0.8, "p_strong": 0.82}}
    )


@pytest.fixture
async def replicas(
    replay_base_url: str, redis_server: RedisServer
) -> AsyncIterator[tuple[str, str]]:
    """Two proxy replicas sharing one Redis, as two processes behind a balancer would."""
    config = auth_config(replay_base_url, redis_server.url)
    async with AsyncExitStack() as stack:
        urls = [
            await stack.enter_async_context(
                running(create_app(config, predictor=steering(), env=ENV))
            )
            for _ in range(2)
        ]
        yield urls[0], urls[1]


def sdk(proxy_url: str, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key=key, max_retries=0)


def question(store: ReplayStore, prompt_id: str) -> list[Any]:
    rec = record_by_id(store, prompt_id)
    return [dict(m) for m in rec.messages]


async def wait_for_spend(proxy_url: str, key_name: str, at_least_usd: float) -> None:
    master = {"Authorization": f"Bearer {MASTER}"}
    async with aiohttp.ClientSession() as http, asyncio.timeout(10):
        while True:
            async with http.get(f"{proxy_url}/admin/keys", headers=master) as resp:
                keys = {k["name"]: k for k in (await resp.json())["data"]}
            if keys[key_name]["spend_today_usd"] >= at_least_usd * 0.999:
                return
            await asyncio.sleep(0.02)


def wait_clear_of_minute_boundary() -> None:
    # Rate windows are calendar minutes: a test that sends a few requests must not straddle one.
    left_s = 60 - time.time() % 60
    if left_s < 3:
        time.sleep(left_s + 0.1)


async def test_a_wrong_or_missing_key_is_an_authentication_error(
    replicas: tuple[str, str], replay_store: ReplayStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a, _ = replicas
    async with sdk(a, "sk-not-a-key-0000") as client:
        with pytest.raises(openai.AuthenticationError) as wrong:
            await client.chat.completions.create(
                model="auto", messages=question(replay_store, "gsm8k/1")
            )
    assert wrong.value.code == "invalid_api_key"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{a}/v1/models") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "invalid_api_key"
        async with http.get(f"{a}/health/readiness") as resp:
            assert resp.status == 200  # probes need no key
    assert "sk-not-a-key-0000" not in caplog.text


async def test_keys_see_and_use_only_their_models(
    replicas: tuple[str, str], replay_store: ReplayStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adaptive_proxy.access")
    a, _ = replicas
    async with sdk(a, TEAM_KEY) as client:
        models = await client.models.list()
        assert [m.id for m in models.data] == ["auto"]
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await client.chat.completions.create(
                model=MODEL_WEAK, messages=question(replay_store, "gsm8k/1")
            )
    assert denied.value.code == "model_not_allowed"
    async with sdk(a, MASTER) as master:
        reply = await master.chat.completions.create(
            model=MODEL_WEAK, messages=question(replay_store, "gsm8k/1")
        )
    assert reply.model == MODEL_WEAK
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "adaptive_proxy.access"
    ]
    assert [(line["key"], line["status"]) for line in lines] == [
        ("team-a", 200),
        ("team-a", 403),
        ("master", 200),
    ]
    assert TEAM_KEY not in caplog.text and MASTER not in caplog.text


async def test_two_replicas_share_one_spend_limit(
    replicas: tuple[str, str], replay_store: ReplayStore
) -> None:
    a, b = replicas
    async with sdk(a, TEAM_KEY) as on_a, sdk(b, TEAM_KEY) as on_b:
        # One GPT-4 answer costs more than the key's $0.001 a day; it is admitted (spend so
        # far was under the limit) and books its cost in the shared Redis.
        first = await on_a.chat.completions.create(
            model="auto", messages=question(replay_store, "gsm8k/0")
        )
        cost = (first.model_extra or {})["adaptive"]["cost_usd"]
        assert cost > 0.001
        # The spend is written after the answer, off the request path: wait until it shows.
        await wait_for_spend(b, "team-a", cost)
        with pytest.raises(openai.RateLimitError) as over:
            await on_b.chat.completions.create(
                model="auto", messages=question(replay_store, "gsm8k/1")
            )
    assert over.value.code == "spend_limit_exceeded"
    assert over.value.type == "insufficient_quota"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{a}/metrics") as resp:
            metrics = await resp.text()
        async with http.get(
            f"{b}/admin/keys", headers={"Authorization": f"Bearer {MASTER}"}
        ) as resp:
            listing = await resp.json()
    assert f'adaptive_client_spend_usd_total{{key="team-a"}} {cost}' in metrics
    assert 'adaptive_auth_rejections_total{reason="spend_limit"}' not in metrics  # B refused
    team = next(k for k in listing["data"] if k["name"] == "team-a")
    assert team["source"] == "yaml" and team["spend_today_usd"] == pytest.approx(cost)


async def test_a_key_over_its_spend_limit_still_lists_models_and_asks_for_decisions(
    replicas: tuple[str, str], replay_store: ReplayStore
) -> None:
    # Listing models and deciding reach no upstream: they spend nothing, so the limit on
    # spending does not refuse them.
    a, b = replicas
    messages = question(replay_store, "gsm8k/0")
    async with sdk(a, TEAM_KEY) as on_a, sdk(b, TEAM_KEY) as on_b:
        first = await on_a.chat.completions.create(model="auto", messages=messages)
        await wait_for_spend(b, "team-a", (first.model_extra or {})["adaptive"]["cost_usd"])
        with pytest.raises(openai.RateLimitError):
            await on_b.chat.completions.create(model="auto", messages=messages)
        assert [m.id async for m in on_b.models.list()] == ["auto"]
        decision = await on_b.post(
            "/adaptive/decide",
            body={"model": "auto", "messages": messages},
            cast_to=httpx.Response,
        )
    assert decision.status_code == 200
    assert decision.json()["policy"] == "auto"


async def test_request_rate_limit_is_a_rate_limit_error_with_retry_after(
    replicas: tuple[str, str], replay_store: ReplayStore
) -> None:
    a, b = replicas
    wait_clear_of_minute_boundary()
    messages = question(replay_store, "gsm8k/1")
    async with sdk(a, INTERN_KEY) as on_a, sdk(b, INTERN_KEY) as on_b:
        await on_a.chat.completions.create(model="auto", messages=messages)
        await on_b.chat.completions.create(model="auto", messages=messages)
        with pytest.raises(openai.RateLimitError) as limited:
            await on_a.chat.completions.create(model="auto", messages=messages)
    assert limited.value.code == "rate_limit_exceeded"
    assert 1 <= int(limited.value.response.headers["Retry-After"]) <= 60


async def test_admin_creates_lists_and_revokes_keys_across_replicas(
    replicas: tuple[str, str], replay_store: ReplayStore
) -> None:
    a, b = replicas
    master = {"Authorization": f"Bearer {MASTER}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{a}/admin/keys",
            json={"name": "ci-bot", "models": ["auto"], "spend_limit_usd_per_month": 5},
            headers={"Authorization": f"Bearer {TEAM_KEY}"},
        ) as resp:
            assert resp.status == 403  # a client key is no master key
        async with http.post(
            f"{a}/admin/keys", json={"name": "ci-bot", "models": ["auto"]}, headers=master
        ) as resp:
            assert resp.status == 201
            created = await resp.json()
        async with http.post(f"{b}/admin/keys", json={"name": "ci-bot"}, headers=master) as resp:
            assert resp.status == 409
        key = created["key"]
        async with sdk(b, key) as client:
            reply = await client.chat.completions.create(
                model="auto", messages=question(replay_store, "gsm8k/1")
            )
            assert reply.choices[0].message.content
        async with http.get(f"{b}/admin/keys", headers=master) as resp:
            listing = await resp.json()
        assert "ci-bot" in {k["name"] for k in listing["data"]}
        assert key not in str(listing)
        async with http.delete(f"{b}/admin/keys/ci-bot", headers=master) as resp:
            assert resp.status == 200
        async with http.delete(f"{b}/admin/keys/team-a", headers=master) as resp:
            assert resp.status == 400  # YAML keys are removed in the file
    async with sdk(a, key) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(
                model="auto", messages=question(replay_store, "gsm8k/1")
            )


async def test_spend_limits_fail_closed_when_redis_is_down(
    replicas: tuple[str, str], replay_store: ReplayStore, redis_server: RedisServer
) -> None:
    a, _ = replicas
    redis_server.kill()
    messages = question(replay_store, "gsm8k/1")
    async with sdk(a, TEAM_KEY) as team, sdk(a, INTERN_KEY) as intern, sdk(a, MASTER) as master:
        with pytest.raises(openai.InternalServerError) as refused:
            await team.chat.completions.create(model="auto", messages=messages)
        assert refused.value.status_code == 503
        assert [m.id async for m in team.models.list()] == ["auto"]  # spends nothing
        assert (await intern.chat.completions.create(model="auto", messages=messages)).choices
        assert (await master.chat.completions.create(model="auto", messages=messages)).choices


async def test_without_auth_the_proxy_is_open_and_says_so_once(
    replay_base_url: str, replay_store: ReplayStore, caplog: pytest.LogCaptureFixture
) -> None:
    text = POLICY.split("upstreams:")[1].format(
        url=replay_base_url, weak=MODEL_WEAK, strong=MODEL_STRONG, redis="redis://127.0.0.1:1"
    )
    config = load_config_text("upstreams:" + text.replace("cache:", "#"), env={})
    caplog.set_level(logging.INFO, logger="adaptive_proxy")
    async with running(create_app(config, predictor=steering())) as url:
        async with sdk(url, "anything") as client:
            for _ in range(2):
                await client.chat.completions.create(
                    model="auto", messages=question(replay_store, "gsm8k/1")
                )
    open_lines = [r for r in caplog.records if "the proxy is open" in r.getMessage()]
    assert len(open_lines) == 1 and open_lines[0].levelno == logging.WARNING


async def test_a_tool_s_own_open_proxy_can_start_without_the_warning(
    replay_base_url: str, replay_store: ReplayStore, caplog: pytest.LogCaptureFixture
) -> None:
    text = POLICY.split("upstreams:")[1].format(
        url=replay_base_url, weak=MODEL_WEAK, strong=MODEL_STRONG, redis="redis://127.0.0.1:1"
    )
    config = load_config_text("upstreams:" + text.replace("cache:", "#"), env={})
    caplog.set_level(logging.INFO, logger="adaptive_proxy")
    app = create_app(config, predictor=steering(), warn_if_open=False)
    async with running(app) as url, sdk(url, "anything") as client:
        assert (
            await client.chat.completions.create(
                model="auto", messages=question(replay_store, "gsm8k/1")
            )
        ).choices  # open: any key is served
    assert not [r for r in caplog.records if "server.auth" in r.getMessage()]


async def test_yaml_keys_reload_live(
    replay_base_url: str, replay_store: ReplayStore, tmp_path: Path
) -> None:
    text = POLICY.format(
        url=replay_base_url,
        weak=MODEL_WEAK,
        strong=MODEL_STRONG,
        redis="redis://127.0.0.1:1",
        team_sha=sha(TEAM_KEY),
        intern_sha=sha(INTERN_KEY),
    ).replace("cache:", "# cache:")  # in-process counters
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    app = create_app(load_config(path, env=ENV), config_path=path, predictor=steering(), env=ENV)
    messages = question(replay_store, "gsm8k/1")
    async with running(app) as url, sdk(url, INTERN_KEY) as intern:
        assert (await intern.chat.completions.create(model="auto", messages=messages)).choices
        path.write_text(text.replace(sha(INTERN_KEY), sha("sk-intern-rotated-0001")))
        assert await app[CONFIG].reload() is True
        with pytest.raises(openai.AuthenticationError):
            await intern.chat.completions.create(model="auto", messages=messages)
        async with sdk(url, "sk-intern-rotated-0001") as rotated:
            assert (await rotated.chat.completions.create(model="auto", messages=messages)).choices
