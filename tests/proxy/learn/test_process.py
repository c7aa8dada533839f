"""``adaptive-proxy learn`` and ``serve --learn`` as processes, on real SQLite files and a real
redis-server: a refit promotes, a rollback says which version serves, SIGTERM stops, SIGKILL in
the middle of a fit loses nothing and leaves the promoted version as it was."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from proxy.config.schema import load_config
from proxy.learn.export import HeadExporter
from proxy.learn.store import OutcomeStore
from proxy.learn.wiring import prior_version
from tests.cli import cli_command, cli_env, run_cli
from tests.proxy.learn.builders import redis_store, sqlite_store
from tests.proxy.learn.traffic import traffic
from tests.redis_server import RedisServer

POLICY = "router"
START_TIMEOUT_S = 120.0
_T = TypeVar("_T")


def _config(tmp_path: Path, *, store: str | None, redis_url: str | None = None) -> Path:
    learning = f'store: "{store}", ' if store else ""
    cache = f'cache: {{redis_url: "{redis_url}"}}\n' if redis_url else ""
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
server: {{reload: false}}
upstreams:
  small: {{base_url: "http://127.0.0.1:9/v1", model: "m-small"}}
  big: {{base_url: "http://127.0.0.1:9/v1", model: "m-big"}}
policies:
  {POLICY}: {{type: route, cheap: small, expensive: big, threshold: 0.1, learn: true}}
predictor: {{type: hash}}
{cache}learning: {{{learning}min_labels: 200, refit_every: 200, poll_s: 0.2}}
""",
        encoding="utf-8",
    )
    return path


async def _seed(store: OutcomeStore, n: int, *, start: int = 0) -> None:
    """``n`` labelled requests the prior knows nothing of (ids ``q<start>``…), an hour old."""
    await store.write(traffic(n, kind="informative", start=start, t0=time.time() - 3600.0).entries)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "outcomes.sqlite3"


async def _with_store(db: Path, body: Callable[[OutcomeStore], Awaitable[_T]]) -> _T:
    """``body`` on the SQLite store at ``db`` (opened and closed around it, as a tool would)."""
    store = sqlite_store(db)
    try:
        return await body(store)
    finally:
        await store.aclose()


async def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # A refit of a few thousand rows on a loaded CI machine can take a minute or two.
    return await asyncio.to_thread(run_cli, *args, timeout_s=START_TIMEOUT_S * 3)


class Learning:
    """A running ``adaptive-proxy …`` process whose stderr is read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace"))

    @classmethod
    async def start(cls, *args: str) -> Learning:
        command = cli_command(*args)
        process = await asyncio.create_subprocess_exec(
            *command, stderr=asyncio.subprocess.PIPE, env=cli_env()
        )
        return cls(process)

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (fails if the process ends first)."""
        regex = re.compile(pattern)
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        seen = 0
        while asyncio.get_running_loop().time() < deadline:
            for line in self.lines[seen:]:
                if match := regex.search(line):
                    return match
            seen = len(self.lines)
            if self.process.returncode is not None and self.reader.done():
                break
            await asyncio.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.lines)}")

    async def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        code = await asyncio.wait_for(self.process.wait(), START_TIMEOUT_S)
        await self.reader
        return code

    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
async def running() -> AsyncIterator[list[Learning]]:
    """Processes a test starts; killed at its end if still alive."""
    started: list[Learning] = []
    yield started
    for learning in started:
        if learning.process.returncode is None:
            learning.process.kill()
        await learning.process.wait()
        # Until every writer of its stderr (a learner child too) has closed it.
        await asyncio.wait_for(learning.reader, START_TIMEOUT_S)


async def test_a_refit_promotes_and_a_rollback_says_which_version_serves(
    tmp_path: Path, db: Path
) -> None:
    await _with_store(db, lambda s: _seed(s, 500))
    config = _config(tmp_path, store=str(db))
    result = await _run("learn", "--config", str(config), "--once")
    assert result.returncode == 0, result.stderr
    assert re.search(r"learner: router promoted", result.stderr), result.stderr
    model = await _with_store(db, lambda s: s.current_model(POLICY))
    assert model is not None
    version = model.version
    # Exported beside the store's file, named current in the folder's manifest.
    assert HeadExporter(db.parent / "models").manifest(POLICY)["current"] == version

    rollback = await _run("learn", "--config", str(config), "--rollback", POLICY)
    assert rollback.returncode == 0, rollback.stderr
    prior = prior_version(load_config(config))  # the name the server reports too
    assert rollback.stdout.strip() == f"{POLICY}: rolled back from {version} to {prior}"
    assert await _with_store(db, lambda s: s.current_model(POLICY)) is None
    assert HeadExporter(db.parent / "models").manifest(POLICY)["current"] is None


async def test_a_rollback_of_a_policy_that_does_not_learn_names_those_that_do(
    tmp_path: Path, db: Path
) -> None:
    result = await _run(
        "learn", "--config", str(_config(tmp_path, store=str(db))), "--rollback", "nope"
    )
    assert result.returncode == 2
    assert "no learn: true policy 'nope' (learning: router)" in result.stderr


async def test_sigterm_stops_the_learner_cleanly(
    tmp_path: Path, db: Path, running: list[Learning]
) -> None:
    learning = await Learning.start("learn", "--config", str(_config(tmp_path, store=str(db))))
    running.append(learning)
    await learning.wait_for(r"learner \(pid \d+\): policies \[router\]")
    await learning.wait_for(r"router too_few \(0 labels < min_labels 200\)")
    assert await learning.stop(signal.SIGTERM) == 0
    assert "learner: stopped" in learning.text()


async def test_a_learner_killed_mid_fit_loses_nothing_and_a_restart_completes(
    tmp_path: Path, db: Path, running: list[Learning]
) -> None:
    config = _config(tmp_path, store=str(db))
    await _with_store(db, lambda s: _seed(s, 300))
    first = await _run("learn", "--config", str(config), "--once")
    assert "router promoted" in first.stderr, first.stderr
    promoted = await _with_store(db, lambda s: s.current_model(POLICY))
    assert promoted is not None
    # Enough new labels that the next fit takes a while: the kill lands inside it.
    await _with_store(db, lambda s: _seed(s, 1500, start=300))

    learning = await Learning.start("learn", "--config", str(config))
    running.append(learning)
    await learning.wait_for(r"learner: refitting router on 1800 labels \(1500 new\)")
    assert await learning.stop(signal.SIGKILL) == -signal.SIGKILL
    assert "router promoted" not in learning.text() and "router rejected" not in learning.text()

    async def after_kill(store: OutcomeStore) -> tuple[Any, Any, int]:
        return (
            await store.label_totals(POLICY),
            await store.current_model(POLICY),
            (await store.learner_state(POLICY)).labels_at_fit,
        )

    totals, current, labels_at_fit = await _with_store(db, after_kill)
    assert totals == {"free": 0, "explored": 0, "feedback": 1800}
    assert current == promoted  # the serving version, untouched
    assert labels_at_fit == 300
    exporter = HeadExporter(db.parent / "models")
    assert exporter.manifest(POLICY)["current"] == promoted.version
    assert exporter.load_current(POLICY) is not None  # whole, hash-checked

    restart = await _run("learn", "--config", str(config), "--once")
    assert restart.returncode == 0, restart.stderr
    assert re.search(r"router (promoted|rejected)", restart.stderr), restart.stderr
    state = await _with_store(db, lambda s: s.learner_state(POLICY))
    assert state.labels_at_fit == 1800


async def test_the_learner_uses_the_caches_redis_when_no_store_is_named(tmp_path: Path) -> None:
    server = RedisServer()
    server.start()
    try:
        store = redis_store(server.url)
        try:
            await _seed(store, 400)
            result = await _run(
                "learn",
                "--config",
                str(_config(tmp_path, store=None, redis_url=server.url)),
                "--once",
            )
            assert result.returncode == 0, result.stderr
            assert f"store {server.url}" in result.stderr
            assert "router promoted" in result.stderr, result.stderr
            model = await store.current_model(POLICY)
            assert model is not None and model.version.startswith("learned-")
        finally:
            await store.aclose()
    finally:
        server.close()


async def test_serve_learn_runs_the_learner_beside_the_server_and_stops_it(
    tmp_path: Path, db: Path, running: list[Learning]
) -> None:
    await _with_store(db, lambda s: _seed(s, 300))
    config = _config(tmp_path, store=str(db))
    serving = await Learning.start(
        "serve", "--config", str(config), "--host", "127.0.0.1", "--port", "0", "--learn"
    )
    running.append(serving)
    child = int((await serving.wait_for(r"learner started beside the server \(pid (\d+)\)"))[1])
    assert child != serving.process.pid
    await serving.wait_for(r"serving policies \[router\]")
    await serving.wait_for(r"learner: router promoted")
    assert await serving.stop(signal.SIGTERM) == 0
    assert re.search(rf"learner pid {child} stopped \(status 0\)", serving.text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    model = await _with_store(db, lambda s: s.current_model(POLICY))
    assert model is not None


async def test_a_learner_whose_server_was_killed_stops_itself(
    tmp_path: Path, db: Path, running: list[Learning]
) -> None:
    config = _config(tmp_path, store=str(db))
    serving = await Learning.start(
        "serve", "--config", str(config), "--host", "127.0.0.1", "--port", "0", "--learn"
    )
    running.append(serving)
    await serving.wait_for(r"learner started beside the server \(pid (\d+)\)")
    await serving.wait_for(r"proxy\.learn\[\d+\]: learner \(pid \d+\): policies \[router\]")
    serving.process.kill()  # no chance to stop its child
    # The child shares the server's stderr: it says why it stops, then that it has.
    await serving.wait_for(r"the server that started it is gone; stopping")
    await serving.wait_for(r"learner: stopped")
