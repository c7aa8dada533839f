"""The official ``openai`` Python SDK against every policy: chat completions and Responses.

Headers come from ``with_raw_response`` / ``with_streaming_response``; usage from the answer (a
stream's last chunk with ``include_usage``, the Responses ``response.completed`` event).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.clients.stack import POLICIES, ClientStack


@pytest.fixture(scope="module")
def client(client_stack: ClientStack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=client_stack.base_url, api_key="x", max_retries=0) as c:
        yield c


def check_headers(headers: Any, policy: str, stack: ClientStack) -> None:
    """The decision headers every policy answer carries."""
    stack.check_headers(headers, policy)
    assert headers["x-adaptive-cache"] in ("hit", "miss")
    assert float(headers["x-adaptive-decision-ms"]) >= 0


@pytest.mark.parametrize("policy", POLICIES)
def test_chat_completion(client: openai.OpenAI, client_stack: ClientStack, policy: str) -> None:
    expected = client_stack.expect(policy)
    raw = client.chat.completions.with_raw_response.create(
        model=policy,
        messages=client_stack.messages,
    )
    check_headers(raw.headers, policy, client_stack)
    completion = raw.parse()
    assert completion.choices[0].message.content in expected.texts
    assert completion.usage is not None
    expected.check_usage(completion.usage.prompt_tokens, completion.usage.completion_tokens)
    adaptive = (completion.model_extra or {})["adaptive"]
    assert adaptive["policy"] == policy and adaptive["arm"] == expected.arm


@pytest.mark.parametrize("policy", POLICIES)
def test_chat_completion_stream(
    client: openai.OpenAI, client_stack: ClientStack, policy: str
) -> None:
    expected = client_stack.expect(policy)
    with client.chat.completions.with_streaming_response.create(
        model=policy,
        messages=client_stack.messages,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        check_headers(response.headers, policy, client_stack)
        pieces, usage = [], None
        for chunk in response.parse():
            pieces += [c.delta.content or "" for c in chunk.choices]
            usage = chunk.usage or usage
    assert "".join(pieces) in expected.texts
    assert usage is not None
    expected.check_usage(usage.prompt_tokens, usage.completion_tokens)


def _responses_text(response: Any) -> str:
    return str(response.output_text)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_responses_on_a_passthrough_model(
    client: openai.OpenAI, client_stack: ClientStack, stream: bool
) -> None:
    """An upstream's name as ``model``: forwarded to it unchanged (no decision is made)."""
    expected = client_stack.expect("passthrough")
    if not stream:
        raw = client.responses.with_raw_response.create(model="mixtral", input=client_stack.prompt)
        headers, response = raw.headers, raw.parse()
    else:
        with client.responses.with_streaming_response.create(
            model="mixtral", input=client_stack.prompt, stream=True
        ) as streamed:
            headers = streamed.headers
            events = list(streamed.parse())
        assert any(e.type == "response.output_text.delta" for e in events)
        response = next(e.response for e in events if e.type == "response.completed")
    assert headers["x-request-id"]
    assert _responses_text(response) in expected.texts
    assert response.usage is not None
    expected.check_usage(response.usage.input_tokens, response.usage.output_tokens)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("policy", POLICIES)
def test_responses_on_a_policy(
    client: openai.OpenAI, client_stack: ClientStack, policy: str, stream: bool
) -> None:
    expected = client_stack.expect(policy)
    if not stream:
        raw = client.responses.with_raw_response.create(model=policy, input=client_stack.prompt)
        headers, response = raw.headers, raw.parse()
        text = _responses_text(response)
    else:
        with client.responses.with_streaming_response.create(
            model=policy, input=client_stack.prompt, stream=True
        ) as streamed:
            headers = streamed.headers
            events = list(streamed.parse())
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        response = next(e.response for e in events if e.type == "response.completed")
        text = "".join(deltas)
        assert text == _responses_text(response)
    check_headers(headers, policy, client_stack)
    assert text in expected.texts
    assert response.usage is not None
    expected.check_usage(response.usage.input_tokens, response.usage.output_tokens)
