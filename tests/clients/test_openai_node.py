"""The official ``openai`` Node SDK (``tests/clients/node/openai_sdk.mjs``) against every policy.

Headers come from ``.withResponse()``; chat streams ask for ``include_usage``.
"""

from __future__ import annotations

import pytest

from tests.clients.node_runner import NodeRuns
from tests.clients.stack import POLICIES

MODES = pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])


@MODES
@pytest.mark.parametrize("policy", POLICIES)
def test_chat_completion(node_runs: NodeRuns, policy: str, stream: bool) -> None:
    node_runs.check_policy("openai_sdk.mjs", "chat", policy, stream)


@MODES
def test_responses_on_a_passthrough_model(node_runs: NodeRuns, stream: bool) -> None:
    node_runs.check_passthrough("openai_sdk.mjs", "responses", stream)


@MODES
@pytest.mark.parametrize("policy", POLICIES)
def test_responses_on_a_policy(node_runs: NodeRuns, policy: str, stream: bool) -> None:
    node_runs.check_policy("openai_sdk.mjs", "responses", policy, stream)
