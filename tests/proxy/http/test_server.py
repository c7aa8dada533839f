"""The server under the app: malformed HTTP, slow clients, and the connection cap.

Raw sockets talk to the real proxy, because these are the requests no HTTP client library
would send.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.proxy.fake_upstream import PRIMARY_MODEL, Hang, Stack, Stream, chunk, proxy_stack

ROOT = Path(__file__).resolve().parents[3]
USER: Any = [{"role": "user", "content": "Name three primes."}]
GARBAGE = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
]


async def exchange(stack: Stack, raw: bytes, *, wait_s: float = 5.0) -> bytes:
    """Send ``raw`` and read until the proxy closes the connection."""
    host, port = stack.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(wait_s):
            return await reader.read()
    finally:
        writer.close()


def parse(response: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, orjson.loads(body)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with proxy_stack(
        server={"header_timeout_s": 0.5, "idle_timeout_s": 1.0, "max_connections": 8}
    ) as running:
        yield running


@pytest.mark.parametrize("raw", GARBAGE)
async def test_malformed_http_is_answered_in_the_openai_error_shape(
    stack: Stack, raw: bytes
) -> None:
    status, headers, body = parse(await exchange(stack, raw))
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "bad_http_request"


async def test_slow_headers_are_cut_off_with_a_408(stack: Stack) -> None:
    # Half a request line, then silence: the header deadline closes the connection.
    status, _, body = parse(await exchange(stack, b"POST /v1/chat/compl", wait_s=5.0))
    assert status == 408
    assert "server.header_timeout_s" in str(body)


async def test_idle_keepalive_connection_is_closed(stack: Stack) -> None:
    host, port = stack.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /health/liveness HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5.0):
            first = await reader.readuntil(b'{"status":"ok"}')
            assert b"200 OK" in first
            assert await reader.read() == b""  # closed by the proxy after idle_timeout_s
    finally:
        writer.close()


async def test_connections_past_the_cap_get_503_and_one_warning(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adaptive_proxy.server")
    host, port = stack.base_url.removeprefix("http://").split(":")
    held = [await asyncio.open_connection(host, int(port)) for _ in range(8)]
    try:
        answers = [
            await exchange(stack, b"GET /health/liveness HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(3)
        ]
        for answer in answers:
            status, headers, body = parse(answer)
            assert status == 503
            assert headers["retry-after"] == "1"
            assert "server.max_connections" in str(body)
        warnings = [r for r in caplog.records if "connection limit reached" in r.getMessage()]
        assert len(warnings) == 1
    finally:
        for _, writer in held:
            writer.close()
    await asyncio.sleep(0.2)
    status, _, _ = parse(
        await exchange(
            stack, b"GET /health/liveness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    )
    assert status == 200
    assert any("accepting connections again" in r.getMessage() for r in caplog.records)


async def test_slow_body_gets_a_408() -> None:
    async with proxy_stack(server={"body_timeout_s": 0.5}) as stack:
        head = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n"
        )
        status, _, body = parse(await exchange(stack, head + b'{"model": "auto", '))
    assert status == 408
    assert "server.body_timeout_s" in str(body)


def test_serve_raises_the_soft_open_file_limit_to_the_hard_limit() -> None:
    script = "from proxy.cli import raise_open_file_limit as r; print(r(100))"
    soft_before = 256
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= soft_before:
        pytest.skip("the hard open-file limit leaves nothing to raise")

    def lower_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft_before, hard))

    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lower_soft_limit,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert int(result.stdout) > soft_before


async def test_shutdown_drains_within_the_grace_period_and_ends_the_rest_cleanly() -> None:
    async with proxy_stack(server={"shutdown_timeout_s": 0.5}) as stack:
        stack.primary.script(Hang(), Stream((chunk(PRIMARY_MODEL, {"content": "a"}),), end="hang"))
        url = f"{stack.base_url}/v1/chat/completions"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{stack.base_url}/health/readiness") as resp:
                assert resp.status == 200  # and the connection stays open for later

            async def plain() -> tuple[int, dict[str, Any]]:
                body = {"model": "auto", "messages": USER}
                async with aiohttp.ClientSession() as own, own.post(url, json=body) as resp:
                    return resp.status, await resp.json()

            async def streamed() -> bytes:
                body = {"model": "auto", "messages": USER, "stream": True}
                async with aiohttp.ClientSession() as own, own.post(url, json=body) as resp:
                    return await resp.read()

            requests = asyncio.gather(plain(), streamed())
            async with asyncio.timeout(5.0):
                while len(stack.primary.requests) < 2:
                    stack.primary.received.clear()
                    await stack.primary.received.wait()
            started = time.monotonic()
            shutdown = asyncio.create_task(stack.runner.cleanup())
            await asyncio.sleep(0.1)
            async with http.get(f"{stack.base_url}/health/readiness") as resp:
                assert resp.status == 503
                assert (await resp.json())["status"] == "draining"
            (status, error), raw = await requests
            await shutdown
            elapsed_s = time.monotonic() - started
    assert status == 503 and error["error"]["code"] == "shutting_down"
    events = [e.removeprefix(b"data: ") for e in raw.split(b"\n\n") if e.strip()]
    assert orjson.loads(events[-2])["error"]["code"] == "shutting_down"
    assert events[-1] == b"[DONE]"
    assert 0.5 <= elapsed_s < 3.0
