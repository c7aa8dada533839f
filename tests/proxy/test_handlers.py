"""Input alone never causes a 5xx: over-deep JSON and bodies that are not what they claim.

Each case was a 500 with a traceback before: a body nested deeper than the JSON writer allows
parsed fine and failed when re-serialised, and ``Content-Encoding: gzip`` on a plain body failed
while reading it.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from proxy.protocol import MAX_JSON_DEPTH
from tests.proxy.fake_upstream import Stack, proxy_stack

HELLO = b'{"model":"auto","messages":[{"role":"user","content":"hi"}]'


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with proxy_stack() as running:
        yield running


def nested(levels: int) -> bytes:
    return b"[" * levels + b"1" + b"]" * levels


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/adaptive/decide"])
@pytest.mark.parametrize("field", [b"tools", b"metadata", b"user"])
async def test_over_deep_json_anywhere_is_a_400_naming_the_limit(
    stack: Stack, path: str, field: bytes
) -> None:
    body = HELLO + b',"' + field + b'":' + nested(254) + b"}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base_url}{path}", data=body) as resp,
    ):
        error = (await resp.json())["error"]
    assert resp.status == 400
    assert error["code"] == "json_too_deep"
    assert str(MAX_JSON_DEPTH) in error["message"]


async def test_over_deep_message_key_and_allocate_are_400(stack: Stack) -> None:
    deep_message = (
        b'{"model":"auto","messages":[{"role":"user","content":"hi","x":' + nested(300) + b"}]}"
    )
    deep_allocate = (
        b'{"model":"auto","budget":2,"requests":[{"messages":[{"role":"user","content":"hi",'
        b'"x":' + nested(260) + b"}]}]}"
    )
    async with aiohttp.ClientSession() as http:
        for path, body in (
            ("/v1/chat/completions", deep_message),
            ("/v1/adaptive/allocate", deep_allocate),
        ):
            async with http.post(f"{stack.base_url}{path}", data=body) as resp:
                assert resp.status == 400, path
                assert (await resp.json())["error"]["code"] == "json_too_deep"


async def test_depth_just_under_the_limit_is_served(stack: Stack) -> None:
    body = HELLO + b',"metadata":{"k":' + nested(MAX_JSON_DEPTH - 4) + b"}}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{stack.base_url}/v1/chat/completions", data=body) as resp,
    ):
        assert resp.status == 200
    assert stack.primary.requests[-1].body["metadata"]["k"][0][0] is not None


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_content_encoding_on_a_plain_body_is_a_400(stack: Stack, encoding: str) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.base_url}/v1/chat/completions",
            data=HELLO + b"}",
            headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
        ) as resp,
    ):
        error = (await resp.json())["error"]
    assert resp.status == 400
    assert error["code"] == "invalid_body_encoding"
    assert "Content-Encoding" in error["message"]


async def test_a_really_compressed_body_is_served(stack: Stack) -> None:
    compressor = zlib.compressobj(wbits=31)  # gzip framing
    body = compressor.compress(HELLO + b"}") + compressor.flush()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{stack.base_url}/v1/chat/completions",
            data=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 200
        assert orjson.loads(await resp.read())["adaptive"]["policy"] == "auto"
