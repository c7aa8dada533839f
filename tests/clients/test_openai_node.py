"""The official ``openai`` Node SDK (``tests/clients/node/openai_sdk.mjs``) against every policy.

Headers come from ``.withResponse()``; chat streams ask for ``include_usage``.
"""

from __future__ import annotations

import pytest

from tests.clients.node_runner import NodeRuns, check_decision_headers
from tests.clients.stack import POLICIES, ClientStack

MODES = pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])


@MODES
@pytest.mark.parametrize("policy", POLICIES)
def test_chat_completion(
    node_runs: NodeRuns, client_stack: ClientStack, policy: str, stream: bool
) -> None:
    result = node_runs.result("openai_sdk.mjs", "chat", policy, stream)
    result.check(client_stack.expect(policy))
    check_decision_headers(result.headers, policy, client_stack)


@MODES
def test_responses_on_a_passthrough_model(
    node_runs: NodeRuns, client_stack: ClientStack, stream: bool
) -> None:
    result = node_runs.result("openai_sdk.mjs", "responses", "mixtral", stream)
    result.check(client_stack.expect("passthrough"))
    assert result.headers["x-request-id"]


@MODES
@pytest.mark.parametrize("policy", POLICIES)
def test_responses_on_a_policy(
    node_runs: NodeRuns, client_stack: ClientStack, policy: str, stream: bool
) -> None:
    result = node_runs.result("openai_sdk.mjs", "responses", policy, stream)
    result.check(client_stack.expect(policy))
    check_decision_headers(result.headers, policy, client_stack)
