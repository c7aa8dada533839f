"""The Vercel AI SDK (``tests/clients/node/vercel_ai.mjs``) against every policy.

``openai.chat(model)`` calls chat completions; the default provider ``openai(model)`` (as in
``openai("auto")``) calls the Responses API. ``generateText``/``streamText`` expose the
headers in ``result.response.headers`` and the usage as ``inputTokens``/``outputTokens``.
"""

from __future__ import annotations

import pytest

from tests.clients.node_runner import NodeRuns
from tests.clients.stack import POLICIES

MODES = pytest.mark.parametrize("stream", [False, True], ids=["generate", "stream"])


@MODES
@pytest.mark.parametrize("policy", POLICIES)
def test_chat_provider(node_runs: NodeRuns, policy: str, stream: bool) -> None:
    node_runs.check_policy("vercel_ai.mjs", "chat", policy, stream)


@MODES
def test_default_provider_on_a_passthrough_model(node_runs: NodeRuns, stream: bool) -> None:
    node_runs.check_passthrough("vercel_ai.mjs", "auto", stream)


@MODES
@pytest.mark.parametrize("policy", POLICIES)
def test_default_provider_on_a_policy(node_runs: NodeRuns, policy: str, stream: bool) -> None:
    """``openai("auto")`` and the other policies, through ``POST /v1/responses``."""
    node_runs.check_policy("vercel_ai.mjs", "auto", policy, stream)
