"""Live reload of the policy file: good edits apply, bad edits are rejected, old policy serves."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from proxy.config.reload import ConfigHolder, Snapshot
from proxy.config.schema import load_config
from proxy.decide.prediction import HashPredictor
from proxy.http.app import create_app
from proxy.http.state import CONFIG
from tests.servers import running

FILE = """
server: {{reload_interval_s: 0.05, reload_settle_s: 0.3}}
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


async def test_a_file_written_in_two_steps_is_loaded_only_once_complete(tmp_path: Path) -> None:
    # A settle time longer than the gap between the two writes.
    slow = FILE.replace("reload_settle_s: 0.3", "reload_settle_s: 1.0")
    path = tmp_path / "policy.yaml"
    path.write_text(slow.format(threshold=0.1))
    app = create_app(load_config(path, env={}), config_path=path, predictor=HashPredictor())
    complete = slow.format(threshold=0.3)
    # The first write ends before policy ``auto``: valid on its own, but it lacks ``auto``.
    first_part = complete[: complete.index("  auto:")]
    statuses: list[int] = []
    body = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
    async with running(app) as url, aiohttp.ClientSession() as s:

        async def ask_for(seconds: float) -> None:
            deadline = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < deadline:
                async with s.post(f"{url}/v1/adaptive/decide", json=body) as r:
                    statuses.append(r.status)
                await asyncio.sleep(0.02)

        path.write_text(first_part + complete[complete.index("  keep:") :])
        await ask_for(0.5)
        path.write_text(complete)

        async def reloaded() -> bool:
            return await decide_threshold(s, url) == 0.3

        await wait_for(reloaded)
    assert statuses and set(statuses) == {200}
    assert app[CONFIG].snapshot.generation == 1  # the half-written file was never loaded


async def test_a_reload_dropping_every_policy_needs_the_flag(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FILE.format(threshold=0.1))
    holder = ConfigHolder(load_config(path, env={}), path=path, env={})
    upstreams_only = FILE.format(threshold=0.1).split("policies:")[0]
    path.write_text(upstreams_only)
    with caplog.at_level(logging.ERROR, logger="adaptive_proxy.reload"):
        assert await holder.reload() is False
    assert "server.allow_empty_policies" in caplog.text
    assert set(holder.snapshot.config.policies) == {"auto", "keep"}
    intended = upstreams_only.replace("reload_settle_s: 0.3", "allow_empty_policies: true")
    path.write_text(intended)
    assert await holder.reload() is True
    assert holder.snapshot.config.policies == {}


async def test_reverting_a_rejected_edit_clears_the_readiness_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(FILE.format(threshold=0.1))
    holder = ConfigHolder(load_config(path, env={}), path=path, env={})
    path.write_text(FILE.format(threshold="'very high'"))
    assert await holder.reload() is False and holder.last_error is not None
    caplog.set_level(logging.INFO, logger="adaptive_proxy.reload")
    path.write_text(FILE.format(threshold=0.1))  # back to the config in force
    assert await holder.reload() is False
    assert holder.last_error is None
    assert "valid again" in caplog.text
