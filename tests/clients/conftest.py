"""The client tests' shared stack (one replay upstream and one proxy per session) and the
Node clients' directory.

``ADAPTIVE_CLIENTS_NODE_DIR`` names the directory where ``.ci/run`` installed the Node clients
(``npm ci`` of ``tests/clients/node/package.json``); without it the Node tests are skipped,
unless ``ADAPTIVE_REQUIRE_CLIENTS=1`` (as in CI), which makes a missing client a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from replay.store import ReplayStore
from tests.clients.node_runner import NodeRuns
from tests.clients.required import NODE_DIR_ENV, missing_client
from tests.clients.stack import ClientStack


@pytest.fixture(scope="session")
def client_stack(replay_store: ReplayStore) -> Iterator[ClientStack]:
    """The replay upstream and the proxy with one policy of each type, shared by every client."""
    stack = ClientStack(replay_store).start()
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The ``node_modules`` directory holding the pinned Node clients (and ``node`` on PATH)."""
    if shutil.which("node") is None:
        missing_client("node is not installed (apt-get install nodejs npm)")
    where = os.environ.get(NODE_DIR_ENV)
    if not where:
        missing_client(f"{NODE_DIR_ENV} is not set (.ci/run installs the Node clients)")
    modules = Path(where) / "node_modules"
    if not (modules / "openai").is_dir():
        missing_client(f"{modules} has no Node clients (npm ci in {where})")
    return modules


@pytest.fixture(scope="session")
def node_runs(node_modules: Path, client_stack: ClientStack) -> NodeRuns:
    """The Node scripts' answers, each script run once per (kind, mode) for every model."""
    return NodeRuns(node_modules, client_stack)
