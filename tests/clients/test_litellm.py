"""litellm's SDK (``litellm.completion`` with ``openai/<policy>`` and ``api_base``) against every
policy, streaming and not.

litellm exposes the response headers in ``response._hidden_params["additional_headers"]``, each
prefixed ``llm_provider-`` (its documented place for provider headers); a stream's are on the
stream wrapper's ``_hidden_params``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest

from tests.clients.stack import POLICIES, ClientStack

_PREFIX = "llm_provider-"
# Warnings from inside litellm, not from the proxy: its own TypedDicts warn when pydantic builds
# their schema, and its stream wrapper reads a field pydantic 2.11 deprecated.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]


@pytest.fixture(scope="module")
def litellm() -> ModuleType:
    """litellm, imported only when its tests run (the import alone takes seconds)."""
    # Never fetch the price map from the network (as the proxy's command line does): before import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return importlib.import_module("litellm")


def adaptive_headers(hidden: dict[str, Any]) -> dict[str, str]:
    """The proxy's headers from litellm's ``additional_headers``, without litellm's prefix."""
    headers = hidden.get("additional_headers") or {}
    return {k.removeprefix(_PREFIX): str(v) for k, v in headers.items() if k.startswith(_PREFIX)}


def complete(litellm: Any, stack: ClientStack, policy: str, **options: Any) -> Any:
    """``litellm.completion`` of the stack's prompt by ``policy`` (``openai/<policy>``)."""
    return litellm.completion(
        model=f"openai/{policy}",
        messages=stack.messages,
        api_base=stack.base_url,
        api_key="x",
        max_retries=0,
        **options,
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_completion(litellm: Any, client_stack: ClientStack, policy: str) -> None:
    expected = client_stack.expect(policy)
    response = complete(litellm, client_stack, policy)
    assert response.choices[0].message.content in expected.texts
    expected.check_usage(response.usage.prompt_tokens, response.usage.completion_tokens)
    client_stack.check_headers(adaptive_headers(response._hidden_params), policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_completion_stream(litellm: Any, client_stack: ClientStack, policy: str) -> None:
    expected = client_stack.expect(policy)
    stream = complete(
        litellm, client_stack, policy, stream=True, stream_options={"include_usage": True}
    )
    pieces, usage = [], None
    for chunk in stream:
        pieces += [c.delta.content or "" for c in chunk.choices]
        usage = getattr(chunk, "usage", None) or usage
    assert "".join(pieces) in expected.texts
    assert usage is not None
    expected.check_usage(usage.prompt_tokens, usage.completion_tokens)
    client_stack.check_headers(adaptive_headers(stream._hidden_params), policy)
