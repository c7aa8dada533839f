"""Input alone never causes a 5xx: over-deep JSON (bodies and their encodings: test_body).

Each case was a 500 with a traceback before: a body nested deeper than the JSON writer allows
parsed fine and failed when re-serialised.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest

from proxy.decide.prediction import HashPredictor, Messages
from proxy.wire.protocol import MAX_JSON_DEPTH
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


class QueuedPredictor:
    """A predictor that, like the ONNX runtime, serves callers one at a time in arrival order.

    Each prompt costs ``per_prompt_s``; answers come from a hash predictor.
    """

    def __init__(self, per_prompt_s: float) -> None:
        self._inner = HashPredictor()
        self._per_prompt_s = per_prompt_s
        self._lock = asyncio.Lock()  # FIFO: waiters are woken in order

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._inner.output_names

    async def predict(self, batch: Sequence[Messages]) -> list[dict[str, float]]:
        async with self._lock:
            await asyncio.sleep(self._per_prompt_s * len(batch))
            return await self._inner.predict(batch)

    async def aclose(self) -> None:
        return None


def allocation(n: int) -> dict[str, Any]:
    requests = [{"messages": [{"role": "user", "content": f"question {i}"}]} for i in range(n)]
    return {"model": "auto", "budget": n // 2, "requests": requests}


async def test_live_decisions_are_not_starved_by_a_large_allocation() -> None:
    # Unsliced, this batch would hold the predictor for 1.6 s, over the 0.5 s live timeout.
    async with proxy_stack(
        predictor=QueuedPredictor(per_prompt_s=0.001),
        predictor_config={"timeout_s": 0.5},
        server={"allocate_slice": 16},
        max_body_bytes=1 << 20,
    ) as stack:
        async with aiohttp.ClientSession() as http:
            url = stack.base_url

            async def allocate() -> int:
                async with http.post(f"{url}/v1/adaptive/allocate", json=allocation(1600)) as r:
                    return r.status

            async def live(i: int) -> dict[str, Any]:
                await asyncio.sleep(0.05 + 0.05 * i)
                body = {"model": "auto", "messages": [{"role": "user", "content": f"live {i}"}]}
                async with http.post(f"{url}/v1/adaptive/decide", json=body) as r:
                    assert r.status == 200
                    decided: dict[str, Any] = await r.json()
                    return decided

            planned, *decisions = await asyncio.gather(allocate(), *(live(i) for i in range(20)))
    assert planned == 200
    assert [d.get("fallback_reason") for d in decisions] == [None] * 20


async def test_allocation_over_the_size_limit_is_413_and_over_time_429() -> None:
    async with proxy_stack(
        predictor=QueuedPredictor(per_prompt_s=0.01),
        server={"allocate_max_requests": 100, "allocate_timeout_s": 0.2},
    ) as stack:
        async with aiohttp.ClientSession() as http:
            url = f"{stack.base_url}/v1/adaptive/allocate"
            async with http.post(url, json=allocation(101)) as resp:
                too_many = resp.status, (await resp.json())["error"]
            async with http.post(url, json=allocation(100)) as resp:
                too_slow = resp.status, (await resp.json())["error"], resp.headers
            async with http.post(url, json=allocation(10)) as resp:
                fine = resp.status
    assert too_many[0] == 413 and "server.allocate_max_requests" in too_many[1]["message"]
    assert too_slow[0] == 429 and "server.allocate_timeout_s" in too_slow[1]["message"]
    assert too_slow[2]["Retry-After"] == "1"
    assert fine == 200
