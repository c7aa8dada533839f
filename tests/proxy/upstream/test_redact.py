"""No configured secret leaves the proxy: not in error bodies, SSE events, nor the log.

An upstream that echoes the request's headers in its error message is scripted with the very
key the proxy sent it; the client (the OpenAI SDK, or raw SSE bytes) and the log must never see
the key.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from proxy.config.schema import Config
from proxy.upstream.redact import REDACTED, Redactor
from tests.proxy.fake_upstream import PRIMARY_MODEL, Reply, Stack, Stream, chunk, proxy_stack

KEY_ENV = "FAKE_UPSTREAM_KEY"
SECRET = "sk-test-9f8e7d6c5b4a39281706"
USER: Any = [{"role": "user", "content": "Name three primes."}]


def echo(status: int) -> Reply:
    """An upstream error that quotes the Authorization header it received."""
    message = f"request rejected; received headers Authorization=Bearer {SECRET}"
    return Reply(status=status, body={"error": {"message": message, "type": "invalid_request"}})


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with proxy_stack(env={KEY_ENV: SECRET}, api_key_env=KEY_ENV) as running:
        yield running


async def test_the_upstream_really_receives_the_key(stack: Stack) -> None:
    await stack.client.chat.completions.create(model="auto", messages=USER)
    assert stack.primary.requests[0].headers["Authorization"] == f"Bearer {SECRET}"


async def test_echoed_key_is_redacted_from_a_400(stack: Stack) -> None:
    stack.primary.script(echo(400))
    with pytest.raises(openai.BadRequestError) as caught:
        await stack.client.chat.completions.create(model="auto", messages=USER)
    assert SECRET not in str(caught.value.body)
    assert REDACTED in str(caught.value.body)


async def test_echoed_key_is_redacted_from_a_429_and_the_retry_log(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # primary retries twice, then the backup (same key) answers 429 as well.
    stack.primary.script(echo(429), echo(429), echo(429))
    stack.backup.script(echo(429))
    with pytest.raises(openai.RateLimitError) as caught:
        await stack.client.chat.completions.create(model="auto", messages=USER)
    assert SECRET not in str(caught.value.body)
    assert "retry 1/2" in caplog.text
    assert SECRET not in caplog.text


async def test_echoed_key_is_redacted_from_streams(stack: Stack) -> None:
    stack.primary.script(echo(400))
    leaked = (
        b'data: {"error": {"message": "upstream saw Authorization=Bearer '
        + SECRET.encode()
        + b'"}}\n\n'
    )
    stack.primary.script(Stream((chunk(PRIMARY_MODEL, {"content": "a"}), leaked)))
    body = {"model": "auto", "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as http:
        url = f"{stack.base_url}/v1/chat/completions"
        async with http.post(url, json=body) as resp:
            before_stream = await resp.read()
        async with http.post(url, json=body) as resp:
            mid_stream = await resp.read()
    assert SECRET.encode() not in before_stream and REDACTED.encode() in before_stream
    assert SECRET.encode() not in mid_stream and REDACTED.encode() in mid_stream


def test_redactor_covers_keys_reranker_keys_and_secret_headers() -> None:
    config = Config.model_validate(
        {
            "upstreams": {
                "u": {
                    "base_url": "http://127.0.0.1:1/v1",
                    "model": "m",
                    "api_key_env": "U_KEY",
                    "headers": {"X-Org": "org-visible", "X-Custom-Cred": "cred-123456"},
                    "secret_headers": ["X-Custom-Cred"],
                },
            },
            "policies": {
                "b": {
                    "type": "best_of_k",
                    "upstream": "u",
                    "lambda": 0.1,
                    "reranker": {"type": "reward", "url": "http://x", "api_key_env": "RM_KEY"},
                }
            },
        }
    )
    redactor = Redactor.from_config(config, {"U_KEY": "sk-upstream-1", "RM_KEY": "rm-key-22"})
    text = "sk-upstream-1 rm-key-22 cred-123456 org-visible"
    assert redactor.text(text) == f"{REDACTED} {REDACTED} {REDACTED} org-visible"
    assert redactor.raw(text.encode()) == redactor.text(text).encode()


async def test_passthrough_answers_lose_the_key_too(stack: Stack) -> None:
    stack.primary.script(echo(400), Reply(body={"object": "list", "echo": f"Bearer {SECRET}"}))
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(
                f"{stack.base_url}/v1/embeddings", json={"model": PRIMARY_MODEL, "input": "x"}
            ) as resp:
                body = await resp.text()
                assert SECRET not in body and REDACTED in body


def test_master_keys_of_server_auth_are_redacted() -> None:
    master = "sk-master-5a4b3c2d1e0f"
    config = Config.model_validate(
        {
            "server": {"auth": {"master_key_envs": ["MASTER"]}},
            "upstreams": {"a": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}},
        }
    )
    redactor = Redactor.from_config(config, {"MASTER": master})
    assert redactor.text(f"key {master} echoed") == f"key {REDACTED} echoed"
