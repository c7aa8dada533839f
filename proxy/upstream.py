"""Calls to upstream models: one shared ``aiohttp.ClientSession``, retries, error mapping.

OpenAI-compatible upstreams (OpenAI, vLLM, Ollama, llama.cpp, the replay upstream) go through
aiohttp directly. Any other ``provider`` goes through litellm, imported only when such an upstream
is called (see :mod:`proxy.litellm_adapter`).

Error mapping (what the client sees): upstream 4xx passes through with its status and message;
429 stays 429 with ``Retry-After``; 401/403 become 502 without the upstream body (it may echo
credentials); 5xx and connection failures become 502; timeouts 504. 429, 5xx and connection
errors are retried with exponential backoff within the upstream's ``retries`` budget.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from proxy.config import UpstreamConfig
from proxy.errors import UpstreamError, UpstreamTimeoutError

log = logging.getLogger("adaptive_proxy.upstream")

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 5.0

UpstreamObserver = Callable[[str, float, int], None]


@dataclass(slots=True)
class UpstreamReply:
    """A complete (non-streaming) upstream answer."""

    upstream: str
    data: dict[str, Any]
    latency_s: float
    attempts: int


class UpstreamStream:
    """An open streaming response: iterate complete SSE events (``data: …\\n\\n`` bytes)."""

    def __init__(
        self, upstream: str, events: AsyncIterator[bytes], close: Callable[[], Any]
    ) -> None:
        self.upstream = upstream
        self._events = events
        self._close = close

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events

    async def aclose(self) -> None:
        """Release the connection (idempotent)."""
        result = self._close()
        if asyncio.iscoroutine(result):
            await result


def _error_message(body: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, param, code) of an upstream's error body, as far as it has them."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None, None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):

        def text(key: str) -> str | None:
            value = err.get(key)
            return str(value) if isinstance(value, str | int) and value != "" else None

        return text("message"), text("type"), text("param"), text("code")
    if isinstance(err, str):
        return err, None, None, None
    return None, None, None, None


def map_status_error(
    name: str, status: int, body: bytes, headers: Mapping[str, str]
) -> UpstreamError:
    """Turn an upstream's non-2xx answer into the error the client should see."""
    if status in (401, 403):
        return UpstreamError(
            f"upstream {name!r} rejected the proxy's credentials (HTTP {status}); "
            "check the upstream's api_key_env",
            upstream=name,
            status=502,
            code="upstream_auth_failed",
        )
    message, err_type, param, code = _error_message(body)
    if status == 429:
        retry_after = headers.get("Retry-After")
        return UpstreamError(
            message or f"upstream {name!r} is rate limiting (HTTP 429)",
            upstream=name,
            status=429,
            code="rate_limit_exceeded",
            retryable=True,
            headers={"Retry-After": retry_after} if retry_after else None,
        )
    if 400 <= status < 500:
        error = UpstreamError(
            message or f"upstream {name!r} rejected the request (HTTP {status})",
            upstream=name,
            status=status,
            param=param,
            code=code or "upstream_error",
        )
        error.error_type = err_type or "invalid_request_error"
        return error
    return UpstreamError(
        f"upstream {name!r} failed (HTTP {status})",
        upstream=name,
        status=502,
        retryable=status in _RETRYABLE_STATUS,
    )


class UpstreamClient:
    """Sends chat requests to named upstreams with retries; owns no session of its own."""

    def __init__(
        self,
        upstreams: Mapping[str, UpstreamConfig],
        session: aiohttp.ClientSession,
        *,
        env: Mapping[str, str] | None = None,
        observe: UpstreamObserver | None = None,
    ) -> None:
        self._upstreams = dict(upstreams)
        self._session = session
        self._env = env or {}
        self._observe = observe
        self._litellm_ready = False

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session (rerankers that call HTTP endpoints use it too)."""
        return self._session

    def update(self, upstreams: Mapping[str, UpstreamConfig]) -> None:
        """Swap in a reloaded set of upstreams; requests in flight keep what they started with."""
        self._upstreams = dict(upstreams)

    def config(self, name: str) -> UpstreamConfig:
        """The configuration of upstream ``name``."""
        return self._upstreams[name]

    def _headers(self, cfg: UpstreamConfig) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **cfg.headers}
        if cfg.api_key_env:
            key = self._env.get(cfg.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
        return headers

    def _url(self, cfg: UpstreamConfig) -> str:
        assert cfg.base_url is not None
        return cfg.base_url.rstrip("/") + "/chat/completions"

    def _record(self, name: str, started: float, status: int) -> None:
        if self._observe is not None:
            self._observe(name, time.perf_counter() - started, status)

    async def _backoff(self, cfg: UpstreamConfig, attempt: int, error: UpstreamError) -> None:
        delay = cfg.retry_backoff_s * (2**attempt) * (0.5 + random.random())
        retry_after = error.headers.get("Retry-After")
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), _MAX_RETRY_AFTER_S))
            except ValueError:
                pass
        await asyncio.sleep(delay)

    async def chat(self, name: str, body: dict[str, Any]) -> UpstreamReply:
        """A non-streaming chat completion from upstream ``name`` (this sets ``model``)."""
        cfg = self._upstreams[name]
        payload = {**body, "model": cfg.model, "stream": False}
        payload.pop("stream_options", None)
        if cfg.provider != "openai":
            return await self._litellm_chat(name, cfg, payload)
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                data = await self._post_json(name, cfg, payload)
                self._record(name, started, 200)
                return UpstreamReply(name, data, time.perf_counter() - started, attempt + 1)
            except UpstreamError as error:
                self._record(name, started, error.status)
                if not error.retryable or attempt >= cfg.retries:
                    raise
                log.info(
                    "upstream %s: %s; retry %d/%d", name, error.message, attempt + 1, cfg.retries
                )
                await self._backoff(cfg, attempt, error)
                attempt += 1

    async def _post_json(
        self, name: str, cfg: UpstreamConfig, payload: dict[str, Any]
    ) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, connect=cfg.connect_timeout_s)
        try:
            async with self._session.post(
                self._url(cfg),
                data=orjson.dumps(payload),
                headers=self._headers(cfg),
                timeout=timeout,
            ) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise map_status_error(name, resp.status, body, resp.headers)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"upstream {name!r} did not answer within {cfg.timeout_s:g} s", upstream=name
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"cannot reach upstream {name!r}: {type(exc).__name__}",
                upstream=name,
                retryable=True,
            ) from None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"upstream {name!r} sent a body that is not JSON", upstream=name
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise UpstreamError(
                f"upstream {name!r} sent a malformed chat completion", upstream=name
            )
        return data

    async def open_stream(
        self, name: str, body: dict[str, Any], *, include_usage: bool
    ) -> UpstreamStream:
        """Open a streaming completion; errors before the first byte are raised (and retried)."""
        cfg = self._upstreams[name]
        payload = {**body, "model": cfg.model, "stream": True}
        if include_usage or cfg.stream_usage:
            payload["stream_options"] = {
                **(body.get("stream_options") or {}),
                "include_usage": True,
            }
        if cfg.provider != "openai":
            return await self._litellm_stream(name, cfg, payload)
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                stream = await self._open(name, cfg, payload, started)
                self._record(name, started, 200)
                return stream
            except UpstreamError as error:
                self._record(name, started, error.status)
                if not error.retryable or attempt >= cfg.retries:
                    raise
                await self._backoff(cfg, attempt, error)
                attempt += 1

    async def _open(
        self, name: str, cfg: UpstreamConfig, payload: dict[str, Any], started: float
    ) -> UpstreamStream:
        # A stream may legitimately run long; bound the gaps between bytes, not the total.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=cfg.connect_timeout_s, sock_read=cfg.timeout_s
        )
        try:
            resp = await self._session.post(
                self._url(cfg),
                data=orjson.dumps(payload),
                headers=self._headers(cfg),
                timeout=timeout,
            )
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"upstream {name!r} did not answer within {cfg.timeout_s:g} s", upstream=name
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"cannot reach upstream {name!r}: {type(exc).__name__}",
                upstream=name,
                retryable=True,
            ) from None
        if resp.status >= 400:
            try:
                body = await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            finally:
                resp.release()
            raise map_status_error(name, resp.status, body, resp.headers)
        return UpstreamStream(name, _sse_events(name, cfg, resp), resp.close)

    async def _litellm_chat(
        self, name: str, cfg: UpstreamConfig, payload: dict[str, Any]
    ) -> UpstreamReply:
        from proxy.litellm_adapter import litellm_chat

        started = time.perf_counter()
        data = await litellm_chat(name, cfg, payload, self._api_key(cfg))
        self._record(name, started, 200)
        return UpstreamReply(name, data, time.perf_counter() - started, 1)

    async def _litellm_stream(
        self, name: str, cfg: UpstreamConfig, payload: dict[str, Any]
    ) -> UpstreamStream:
        from proxy.litellm_adapter import litellm_stream

        events, close = await litellm_stream(name, cfg, payload, self._api_key(cfg))
        return UpstreamStream(name, events, close)

    def _api_key(self, cfg: UpstreamConfig) -> str | None:
        return self._env.get(cfg.api_key_env) if cfg.api_key_env else None


async def _sse_events(
    name: str, cfg: UpstreamConfig, resp: aiohttp.ClientResponse
) -> AsyncIterator[bytes]:
    """Complete SSE events from an upstream response, as they arrive."""
    buffer = bytearray()
    try:
        async for line in resp.content:
            if line in (b"\n", b"\r\n"):
                if buffer:
                    yield bytes(buffer) + b"\n"
                    buffer.clear()
                continue
            if line.startswith(b":"):
                continue  # upstream keep-alive comments are the proxy's own business
            buffer += line.rstrip(b"\r\n") + b"\n"
        if buffer:
            yield bytes(buffer) + b"\n"
    except TimeoutError:
        raise UpstreamTimeoutError(
            f"upstream {name!r} stalled for {cfg.timeout_s:g} s mid-stream", upstream=name
        ) from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(
            f"upstream {name!r} dropped the stream: {type(exc).__name__}", upstream=name
        ) from None
    finally:
        resp.close()
