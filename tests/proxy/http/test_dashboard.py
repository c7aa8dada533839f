"""``GET /v1/adaptive/stats`` and ``GET /dashboard`` on a real proxy, a mixed workload sent
through the official SDK to the replay upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from proxy.http.app import create_app
from replay.store import ReplayStore
from tests.proxy.http.dashboard_workload import (
    ENV,
    MASTER,
    dashboard_config,
    gsm8k_messages,
    send_workload,
    steering,
)
from tests.redis_server import RedisServer
from tests.servers import running

POLICIES = ("auto", "budgeted", "vote", "seq", "casc")


async def get_stats(url: str, *, key: str | None = None, window_s: int = 3600) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{url}/v1/adaptive/stats", params={"window_s": window_s}, headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


@pytest.fixture
async def proxy_url(replay_base_url: str) -> AsyncIterator[str]:
    app = create_app(dashboard_config(replay_base_url), predictor=steering())
    async with running(app) as url:
        yield url


async def test_stats_count_every_request_sent_by_policy_and_arm(
    proxy_url: str, replay_store: ReplayStore
) -> None:
    async with AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0) as client:
        sent = await send_workload(client, replay_store)
    stats = await get_stats(proxy_url)
    assert stats["window_s"] == 3600
    assert stats["backend"] == "memory"
    assert stats["clients"] is None
    policies = stats["policies"]
    for name in POLICIES:
        assert policies[name]["requests"] == sent.requests[name]
        assert policies[name]["arms"] == dict(sent.arms[name])
        assert sum(p["requests"] for p in policies[name]["series"]) == sent.requests[name]
    assert policies["auto"]["arms"] == {"cheap": 4, "expensive": 1}
    for name in ("budgeted", "vote", "seq", "casc"):
        assert policies[name]["cost_usd"] == pytest.approx(sent.cost_usd[name], rel=1e-6)
    assert policies["auto"]["cost_usd"] > sent.cost_usd["auto"] > 0  # + the stream's cost


async def test_alternatives_bracket_what_was_paid(
    proxy_url: str, replay_store: ReplayStore
) -> None:
    async with AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0) as client:
        await send_workload(client, replay_store)
    policies = (await get_stats(proxy_url))["policies"]
    route = policies["auto"]["alternatives"]
    assert route["requests"] == 5
    assert (route["cheapest_arm"], route["most_expensive_arm"]) == ("cheap", "expensive")
    assert route["cheapest_cost_usd"] < route["cost_usd"] < route["most_expensive_cost_usd"]
    vote = policies["vote"]
    assert vote["alternatives"]["most_expensive_arm"] == "n=6"
    per_sample = vote["cost_usd"] / vote["samples"]["total"]
    assert vote["alternatives"]["most_expensive_cost_usd"] == pytest.approx(per_sample * 6 * 3)
    assert vote["samples"]["n_max"] == 6
    assert sum(vote["samples"]["by_n"].values()) == 3
    seq = policies["seq"]["sequential"]
    assert seq["requests"] == 3 and sum(seq["stop_reasons"].values()) == 3
    assert seq["rounds_mean"] >= 1
    budget = policies["budgeted"]["budget"]
    assert budget["target"] == pytest.approx(0.3)
    assert budget["lambda"] is not None and budget["realised"] is not None
    assert any(p["budget"] for p in policies["budgeted"]["series"])
    casc = policies["casc"]
    assert casc["alternatives"]["requests"] == 4  # cheap answers carry their tokens too
    assert casc["cascade"]["requests"] == 4
    assert casc["cascade"]["escalated"] == casc["arms"].get("gpt-4", 0)


async def test_upstreams_cache_and_window(proxy_url: str, replay_store: ReplayStore) -> None:
    async with AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0) as client:
        await send_workload(client, replay_store)
    stats = await get_stats(proxy_url, window_s=300)
    assert stats["step_s"] == 5 and stats["window_s"] == 300
    mixtral = stats["upstreams"]["mixtral"]
    assert mixtral["calls"] > 0 and mixtral["errors"] == 0
    assert 0 < mixtral["p50_s"] <= mixtral["p99_s"]
    auto = stats["policies"]["auto"]
    assert auto["cache"]["hits"] + auto["cache"]["misses"] == 5
    async with aiohttp.ClientSession() as http:
        for bad in ("0", "x", "999999"):
            async with http.get(f"{proxy_url}/v1/adaptive/stats?window_s={bad}") as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["param"] == "window_s"


async def test_dashboard_page_and_files_are_served_from_the_package(proxy_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy_url}/dashboard") as resp:
            assert resp.status == 200
            page = await resp.text()
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert '<script src="/dashboard/dashboard.js"' in page
        assert "http://" not in page and "https://" not in page  # no CDN
        for name in ("dashboard.js", "dashboard.css"):
            async with http.get(f"{proxy_url}/dashboard/{name}") as resp:
                assert resp.status == 200
                assert "https://" not in await resp.text()
        async with http.get(f"{proxy_url}/dashboard/../app.py") as resp:
            assert resp.status == 404


async def test_with_auth_the_stats_need_a_master_key(
    replay_base_url: str, replay_store: ReplayStore
) -> None:
    config = dashboard_config(replay_base_url, auth=True)
    async with running(create_app(config, predictor=steering(), env=ENV)) as url:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/dashboard") as resp:
                assert resp.status == 200  # the page itself holds no data
            async with http.get(f"{url}/v1/adaptive/stats") as resp:
                assert resp.status == 401
            wrong = {"Authorization": "Bearer sk-wrong"}
            async with http.get(f"{url}/v1/adaptive/stats", headers=wrong) as resp:
                assert resp.status == 401
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key=MASTER, max_retries=0) as client:
            sent = await send_workload(client, replay_store)
        stats = await get_stats(url, key=MASTER)
        assert stats["policies"]["auto"]["requests"] == sent.requests["auto"]
        assert stats["clients"] == []  # no client keys; the master key is never listed
        assert MASTER not in str(stats)
        assert stats["client_spend_usd"]["master"] > 0


async def test_replicas_sharing_redis_show_each_others_requests(
    replay_base_url: str, replay_store: ReplayStore, redis_server: RedisServer
) -> None:
    config = dashboard_config(replay_base_url, redis_url=redis_server.url)
    async with AsyncExitStack() as stack:
        urls = [
            await stack.enter_async_context(running(create_app(config, predictor=steering())))
            for _ in range(2)
        ]
        async with AsyncOpenAI(base_url=f"{urls[0]}/v1", api_key="x", max_retries=0) as client:
            sent = await send_workload(client, replay_store)
        # The other replica's page: what the first one wrote (each second) to Redis.
        async with asyncio.timeout(10):
            while True:
                stats = await get_stats(urls[1])
                if stats["policies"]["auto"]["requests"] == sent.requests["auto"]:
                    break
                await asyncio.sleep(0.1)
        assert stats["backend"] == "redis"
        assert len(stats["replicas"]) == 2
        for name in POLICIES:
            assert stats["policies"][name]["requests"] == sent.requests[name]
        assert stats["upstreams"]["mixtral"]["calls"] > 0


async def test_with_redis_stalled_requests_succeed_and_the_stats_catch_up(
    replay_base_url: str, replay_store: ReplayStore, redis_server: RedisServer
) -> None:
    config = dashboard_config(replay_base_url, redis_url=redis_server.url)
    async with running(create_app(config, predictor=steering())) as url:
        async with AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
            sent = await send_workload(client, replay_store)
            messages = gsm8k_messages(replay_store, 2)[1]
            redis_server.pause()  # SIGSTOP: every Redis call now times out
            try:
                completion = await client.chat.completions.create(model="auto", messages=messages)
                assert completion.choices[0].message.content
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"{url}/v1/adaptive/stats") as resp:
                        assert resp.status == 503
                        error = (await resp.json())["error"]
                        assert "stats store is unreachable" in error["message"]
            finally:
                redis_server.resume()
        # Nothing was lost: the slots not written during the stall are written now.
        stats = await get_stats(url)
        assert stats["policies"]["auto"]["requests"] == sent.requests["auto"] + 1
        assert stats["policies"]["casc"]["requests"] == sent.requests["casc"]


async def test_cascade_agreement_rate_counts_requests_whose_cheap_answers_agree(
    proxy_url: str, replay_store: ReplayStore
) -> None:
    agreed = compared = 0
    async with AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0) as client:
        for messages in gsm8k_messages(replay_store, 8):
            raw = await client.chat.completions.with_raw_response.create(
                model="casc", messages=messages
            )
            extra = raw.parse().model_extra or {}
            stages = extra["adaptive"]["stages"][:-1]  # the cheap ones
            answers = [a for s in stages for a in s["answers"] if a is not None]
            if len(answers) >= 2:
                compared += 1
                agreed += len(set(answers)) == 1
    assert 0 < agreed < compared  # the recorded answers give both kinds
    cascade = (await get_stats(proxy_url))["policies"]["casc"]["cascade"]
    assert cascade["agreement_requests"] == compared
    assert cascade["agreement_rate"] == pytest.approx(agreed / compared)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy_url}/metrics") as resp:
            metrics = await resp.text()
    line = f'adaptive_cascade_agreement_total{{agreed="true",policy="casc"}} {float(agreed)}'
    assert line in metrics.splitlines()
