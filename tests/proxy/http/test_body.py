"""Request bodies and their ``Content-Encoding``, through the real proxy on a real socket.

Before the proxy decoded bodies itself, aiohttp's parser did: gzip that was not gzip got its 400
but logged ``Unhandled exception`` with chained tracebacks and dropped the connection, deflate
answered as malformed HTTP, and br advised installing a package.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.proxy.fake_upstream import PRIMARY_MODEL, Stack, proxy_stack

CONTENT = "Name three primes."
BODY = orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": CONTENT}]})
MAX_BODY_BYTES = 65536


def zlib_deflate(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(wbits=wbits)
    return compressor.compress(data) + compressor.flush()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with proxy_stack(max_body_bytes=MAX_BODY_BYTES) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # One connection: a refused body must leave it usable for the next request.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    stack: Stack,
    body: bytes,
    encoding: str,
    path: str = "/v1/chat/completions",
) -> tuple[int, dict[str, str], dict[str, Any]]:
    async with http.post(
        f"{stack.base_url}{path}",
        data=body,
        headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
    ) as resp:
        return resp.status, dict(resp.headers), orjson.loads(await resp.read())


async def assert_connection_still_serves(http: aiohttp.ClientSession, stack: Stack) -> None:
    async with http.post(f"{stack.base_url}/v1/chat/completions", data=BODY) as resp:
        assert resp.status == 200


def assert_one_quiet_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback, nothing at ERROR, and the refusal said once at INFO or WARNING."""
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    refusals = [r for r in caplog.records if r.name == "adaptive_proxy.body"]
    assert len(refusals) == 1
    assert refusals[0].levelno in (logging.INFO, logging.WARNING)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        pytest.param("gzip", BODY, id="plain-as-gzip"),
        pytest.param("deflate", BODY, id="plain-as-deflate"),
        pytest.param("gzip", gzip.compress(BODY)[:-9], id="gzip-truncated"),
        pytest.param("deflate", zlib_deflate(BODY, 15)[:-6], id="deflate-truncated"),
        pytest.param("gzip", gzip.compress(BODY) + b"not gzip", id="gzip-then-garbage"),
        # deflate, the last coding applied, is not there
        pytest.param("gzip, deflate", gzip.compress(BODY), id="gzip-claimed-as-gzip-deflate"),
    ],
)
async def test_a_body_its_encoding_cannot_decode_is_one_400_and_one_log_line(
    stack: Stack,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    encoding: str,
    body: bytes,
) -> None:
    caplog.set_level(logging.INFO)
    status, _, answer = await post(http, stack, body, encoding)
    assert status == 400
    error = answer["error"]
    assert error["code"] == "invalid_body_encoding"
    assert error["type"] == "invalid_request_error"
    assert "Content-Encoding" in error["message"]
    await assert_connection_still_serves(http, stack)
    assert_one_quiet_log_line(caplog)


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
async def test_an_encoding_the_proxy_does_not_decode_is_a_415_naming_those_it_does(
    stack: Stack, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    caplog.set_level(logging.INFO)
    status, headers, answer = await post(http, stack, BODY, encoding)
    assert status == 415
    assert headers["Accept-Encoding"] == "gzip, deflate"
    error = answer["error"]
    assert error["code"] == "invalid_body_encoding"
    assert "gzip or deflate" in error["message"]
    assert "install" not in error["message"]
    await assert_connection_still_serves(http, stack)
    assert_one_quiet_log_line(caplog)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        pytest.param("gzip", gzip.compress(BODY), id="gzip"),
        pytest.param("x-gzip", gzip.compress(BODY), id="x-gzip"),
        pytest.param("GZIP", gzip.compress(BODY), id="GZIP"),
        # zlib-wrapped, as HTTP defines it
        pytest.param("deflate", zlib_deflate(BODY, 15), id="deflate-zlib"),
        # raw, as many clients send it
        pytest.param("deflate", zlib_deflate(BODY, -15), id="deflate-raw"),
        pytest.param(
            "gzip, deflate", zlib_deflate(gzip.compress(BODY), 15), id="gzip-then-deflate"
        ),
        pytest.param(
            "gzip", gzip.compress(BODY[:20]) + gzip.compress(BODY[20:]), id="gzip-two-members"
        ),
        pytest.param("identity", BODY, id="identity"),
    ],
)
async def test_a_really_encoded_body_is_served(
    stack: Stack, http: aiohttp.ClientSession, encoding: str, body: bytes
) -> None:
    status, _, answer = await post(http, stack, body, encoding)
    assert status == 200
    assert answer["adaptive"]["policy"] == "auto"
    assert stack.primary.requests[-1].body["messages"][0]["content"] == CONTENT


async def test_a_body_that_decodes_past_the_limit_is_a_413(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    padded = orjson.dumps(
        {"model": "auto", "messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]}
    )
    compressed = gzip.compress(padded)
    assert len(compressed) < MAX_BODY_BYTES // 10
    status, _, answer = await post(http, stack, compressed, "gzip")
    assert status == 413
    assert answer["error"]["code"] == "request_too_large"
    assert "server.max_body_bytes" in answer["error"]["message"]
    assert stack.primary.requests == []


async def test_passthrough_forwards_the_decoded_body(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    body = orjson.dumps({"model": PRIMARY_MODEL, "input": "x", "encoding_format": "float"})
    status, _, answer = await post(http, stack, gzip.compress(body), "gzip", "/v1/embeddings")
    assert status == 200, answer
    (sent,) = stack.primary.raw
    assert sent.body == body
    assert "Content-Encoding" not in sent.headers
