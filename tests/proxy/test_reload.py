"""Live reload of the policy file: good edits apply, bad edits are rejected, old policy serves."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from proxy.app import create_app
from proxy.config import load_config
from proxy.prediction import HashPredictor
from proxy.reload import ConfigHolder, Snapshot
from proxy.state import CONFIG
from tests.servers import running

FILE = """
server: {{reload_interval_s: 0.05}}
upstreams:
  a: {{base_url: "http://127.0.0.1:9/v1", model: small}}
  b: {{base_url: "http://127.0.0.1:9/v1", model: big}}
policies:
  auto: {{type: route, cheap: a, expensive: b, threshold: {threshold}}}
  keep: {{type: route, cheap: a, expensive: b, threshold: 0.5}}
"""


async def decide_threshold(session: aiohttp.ClientSession, url: str) -> float:
    body = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
    async with session.post(f"{url}/v1/adaptive/decide", json=body) as r:
        assert r.status == 200
        return float((await r.json())["threshold"])


async def wait_for(predicate_coro, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout_s):
        # The state lives in another server (a file watcher's result): polling is the only way.
        while not await predicate_coro():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_file_change_reloads_and_bad_edit_keeps_old_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FILE.format(threshold=0.1))
    app = create_app(load_config(path, env={}), config_path=path, predictor=HashPredictor())
    async with running(app) as url, aiohttp.ClientSession() as s:
        assert await decide_threshold(s, url) == 0.1
        path.write_text(FILE.format(threshold=0.3))

        async def reloaded() -> bool:
            return await decide_threshold(s, url) == 0.3

        await wait_for(reloaded)
        with caplog.at_level(logging.ERROR, logger="adaptive_proxy.reload"):
            path.write_text(FILE.format(threshold="'very high'"))
            holder = app[CONFIG]

            async def rejected() -> bool:
                return holder.last_error is not None

            await wait_for(rejected)
        assert "policies.auto.threshold" in caplog.text
        assert await decide_threshold(s, url) == 0.3  # the previous policy keeps serving
        async with s.get(f"{url}/health/readiness") as r:
            assert "policies.auto.threshold" in (await r.json())["config_error"]


async def test_reload_changes_only_the_edited_policy_version(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FILE.format(threshold=0.1))
    holder = ConfigHolder(load_config(path, env={}), path=path, env={})
    before = dict(holder.snapshot.policy_versions)
    seen: list[Snapshot] = []
    holder.subscribe(seen.append)
    path.write_text(FILE.format(threshold=0.2))
    assert await holder.reload() is True
    after = holder.snapshot.policy_versions
    assert after["keep"] == before["keep"] and after["auto"] != before["auto"]
    assert seen and seen[-1].generation == 1
    assert await holder.reload() is False  # unchanged file: nothing to do
