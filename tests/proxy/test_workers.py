"""``adaptive-proxy serve --workers 2``: two processes on one port, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from predictor_onnx.data import MODEL_STRONG, MODEL_WEAK
from replay.server import LatencyModel, create_replay_app
from replay.store import ReplayStore

START_TIMEOUT_S = 60.0
LISTENING = re.compile(r"(\d+) workers \(pids ([\d, ]+)\) on http://127\.0\.0\.1:(\d+)/v1")


@pytest.fixture
async def slow_replay(replay_store: ReplayStore) -> AsyncIterator[str]:
    """A replay upstream taking 1.5 s to answer: long enough to be in flight at SIGTERM."""
    server = TestServer(create_replay_app(replay_store, latency=LatencyModel(ttft_ms=1500)), port=0)
    await server.start_server()
    try:
        yield str(server.make_url("/v1"))
    finally:
        await server.close()


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
    try:
        for _ in range(int(START_TIMEOUT_S * 10)):
            match = next((m for line in log if (m := LISTENING.search(line))), None)
            if match or parent.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert match is not None, "".join(log)
        pids = {int(p) for p in match.group(2).split(", ")}
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
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        reader.cancel()
