"""langchain-openai's ``ChatOpenAI`` (``invoke``, ``stream``; chat completions and
``use_responses_api=True``) against every policy.

With ``include_response_headers=True`` langchain puts the response headers in the message's
``response_metadata["headers"]`` (a stream: on its first chunk, so on the summed message);
usage is ``usage_metadata`` (``stream_usage=True`` asks a stream for it).
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from tests.clients.required import missing_client
from tests.clients.stack import POLICIES, ClientStack

API = pytest.mark.parametrize("responses_api", [False, True], ids=["chat", "responses"])
CALL = pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])


@pytest.fixture(scope="module")
def chat_openai() -> Any:
    """langchain_openai.ChatOpenAI (the `clients` extra)."""
    try:
        return importlib.import_module("langchain_openai").ChatOpenAI
    except ImportError:
        missing_client("langchain-openai is not installed (pip install -e '.[clients]')")


def ask(chat_openai: Any, stack: ClientStack, model: str, responses_api: bool, stream: bool) -> Any:
    """The answer as one message (a stream's chunks summed)."""
    llm = chat_openai(
        model=model,
        base_url=stack.base_url,
        api_key="x",
        max_retries=0,
        include_response_headers=True,
        stream_usage=True,
        use_responses_api=responses_api,
    )
    if not stream:
        return llm.invoke(stack.messages)
    message = None
    for chunk in llm.stream(stack.messages):
        message = chunk if message is None else message + chunk
    return message


def check_answer(message: Any, stack: ClientStack, policy: str) -> None:
    expected = stack.expect(policy)
    assert message.text in expected.texts
    usage = message.usage_metadata
    expected.check_usage(usage["input_tokens"], usage["output_tokens"])


@CALL
@API
@pytest.mark.parametrize("policy", POLICIES)
def test_chat_openai(
    chat_openai: Any, client_stack: ClientStack, policy: str, responses_api: bool, stream: bool
) -> None:
    message = ask(chat_openai, client_stack, policy, responses_api, stream)
    check_answer(message, client_stack, policy)
    client_stack.check_headers(message.response_metadata["headers"], policy)


@CALL
def test_responses_api_on_a_passthrough_model(
    chat_openai: Any, client_stack: ClientStack, stream: bool
) -> None:
    message = ask(chat_openai, client_stack, "mixtral", True, stream)
    check_answer(message, client_stack, "passthrough")
    assert message.response_metadata["headers"]["x-request-id"]
