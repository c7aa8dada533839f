"""``adaptive-proxy serve --workers 2``: two processes on one port, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from proxy.config.schema import load_config_text
from proxy.http.workers import per_process_state
from recorded_data.records import MODEL_STRONG, MODEL_WEAK
from replay.server import LatencyModel
from replay.store import ReplayStore
from tests.cli import cli_command, cli_env
from tests.replay_helpers import replay_upstream

START_TIMEOUT_S = 60.0
LISTENING = re.compile(r"(\d+) workers \(pids ([\d, ]+)\) on http://127\.0\.0\.1:(\d+)/v1")


@pytest.fixture
async def slow_replay(replay_store: ReplayStore) -> AsyncIterator[str]:
    """A replay upstream taking 1.5 s to answer: long enough to be in flight at SIGTERM."""
    async with replay_upstream(replay_store, latency=LatencyModel(ttft_ms=1500)) as url:
        yield url


async def _pids_answering(base_url: str, want: int) -> set[int]:
    """Pids seen on fresh connections to the readiness probe until ``want`` are ready."""
    seen: set[int] = set()
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
    while len(seen) < want and asyncio.get_running_loop().time() < deadline:
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                async with s.get(f"{base_url}/health/readiness") as resp:
                    if resp.status == 200:
                        seen.add((await resp.json())["pid"])
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    return seen


async def test_two_workers_share_a_port_and_sigterm_drains_them(
    slow_replay: str, replay_store: ReplayStore, tmp_path: Path
) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(
        f"""
server: {{reload: false}}
upstreams:
  mixtral: {{base_url: "{slow_replay}", model: "{MODEL_WEAK}"}}
  gpt-4: {{base_url: "{slow_replay}", model: "{MODEL_STRONG}"}}
policies:
  auto: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: 0.1}}
predictor: {{type: hash}}
""",
        encoding="utf-8",
    )
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy.cli",
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--workers",
        "2",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert parent.stderr is not None
    log: list[str] = []

    async def read_log() -> None:
        assert parent.stderr is not None
        async for line in parent.stderr:
            log.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read_log())
    pids: set[int] = set()
    try:
        for _ in range(int(START_TIMEOUT_S * 10)):
            match = next((m for line in log if (m := LISTENING.search(line))), None)
            if match or parent.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert match is not None, "".join(log)
        pids |= {int(p) for p in match.group(2).split(", ")}
        base_url = f"http://127.0.0.1:{match.group(3)}"
        assert await _pids_answering(base_url, 2) == pids  # the kernel spreads connections

        rec = next(r for r in replay_store.records() if r.prompt_id == "gsm8k/1")
        messages: list[Any] = [dict(m) for m in rec.messages]
        async with AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0) as client:
            in_flight = asyncio.create_task(
                client.chat.completions.create(model="auto", messages=messages)
            )
            await asyncio.sleep(0.7)  # the request waits on the slow upstream
            parent.send_signal(signal.SIGTERM)
            answer = await asyncio.wait_for(in_flight, 30)
        assert answer.choices[0].message.content in rec.responses.values()
        assert await asyncio.wait_for(parent.wait(), 30) == 0
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as http:
                await http.get(f"{base_url}/health/liveness")
        assert any("drained and stopped" in line for line in log), "".join(log)
    finally:
        await _stop(parent, pids)
        reader.cancel()


WORKER_POLICY = """
server: {{reload_interval_s: 0.05, reload_settle_s: 0.1}}
upstreams:
  mixtral: {{base_url: "http://127.0.0.1:9/v1", model: small}}
  gpt-4: {{base_url: "http://127.0.0.1:9/v1", model: big}}
policies:
  auto: {{type: route, cheap: mixtral, expensive: gpt-4, threshold: {threshold}}}
predictor: {{type: hash}}
"""


async def _until(log: list[str], done: Any, parent: asyncio.subprocess.Process) -> None:
    """Poll the log until ``done(log)`` holds (or the parent exits, or the start timeout)."""
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
    while not done(log) and parent.returncode is None:
        assert asyncio.get_running_loop().time() < deadline, "".join(log)
        await asyncio.sleep(0.05)
    assert done(log), "".join(log)


async def test_workers_without_redis_warn_once_and_log_with_their_pids(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(WORKER_POLICY.format(threshold=0.1), encoding="utf-8")
    parent = await asyncio.create_subprocess_exec(
        *cli_command("serve", "--config", str(config), "--port", "0", "--workers", "2"),
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    log: list[str] = []
    pids: set[int] = set()

    async def read_log() -> None:
        assert parent.stderr is not None
        async for line in parent.stderr:
            log.append(line.decode(errors="replace"))

    reader = asyncio.create_task(read_log())
    try:
        await _until(log, lambda lines: any(LISTENING.search(line) for line in lines), parent)
        match = next(m for line in log if (m := LISTENING.search(line)))
        pids |= {int(p) for p in match.group(2).split(", ")}
        base_url = f"http://127.0.0.1:{match.group(3)}"
        assert await _pids_answering(base_url, 2) == pids

        def serving(line: str) -> bool:
            return "adaptive-proxy serving policies" in line

        await _until(log, lambda lines: sum(map(serving, lines)) == 2, parent)
        assert {_pid(line) for line in log if serving(line)} == pids
        config.write_text(WORKER_POLICY.format(threshold=0.2), encoding="utf-8")

        def reloaded(line: str) -> bool:
            return "policy reloaded" in line

        await _until(log, lambda lines: {_pid(x) for x in lines if reloaded(x)} == pids, parent)
        parent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(parent.wait(), 30) == 0
        await asyncio.wait_for(reader, 10)
    finally:
        await _stop(parent, pids)
        reader.cancel()
    warnings = [line for line in log if "without Redis" in line]
    assert len(warnings) == 1, "".join(log)
    assert "decision cache and budget controllers" in warnings[0]
    assert "cache.redis_url" in warnings[0]
    # Each worker's lines name it: each says each of these once, the reload included.
    for said in ("the proxy is open", "serving policies", "policy reloaded", "shutting down"):
        said_by = Counter(_pid(line) for line in log if said in line)
        assert said_by == Counter(pids), "".join(log)


async def _stop(parent: asyncio.subprocess.Process, workers: set[int]) -> None:
    """End the parent and the workers it started, also when the test failed half-way.

    SIGTERM lets the parent stop its workers; killing the parent alone would leave them holding
    its stderr, and waiting on the parent waits for that pipe to close.
    """
    if parent.returncode is not None:
        return
    parent.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(parent.wait(), 30)
    except TimeoutError:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.kill()
        await parent.wait()


def _pid(line: str) -> int | None:
    """The pid a worker's log line carries (``adaptive_proxy.reload[1234]: …``)."""
    match = re.search(r" adaptive_proxy[\w.]*\[(\d+)\]: ", line)
    return int(match.group(1)) if match else None


def test_what_each_worker_keeps_to_itself_without_redis() -> None:
    text = WORKER_POLICY.format(threshold=0.1)
    assert per_process_state(load_config_text(text, env={})) == [
        "decision cache",
        "budget controllers",
    ]
    auth = "server: {auth: {master_key_envs: [MASTER]"
    with_auth = text.replace("server: {", auth + "}, ", 1)
    assert "client limits" in per_process_state(load_config_text(with_auth, env={}))
    auth_redis = with_auth.replace("[MASTER]", "[MASTER], redis_url: 'redis://r:6379'")
    assert "client limits" not in per_process_state(load_config_text(auth_redis, env={}))
    shared = text + "cache: {redis_url: 'redis://r:6379'}\n"
    assert per_process_state(load_config_text(shared, env={})) == []
