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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from yarl import URL

from proxy.config import UpstreamConfig
from proxy.errors import UpstreamError, UpstreamTimeoutError, map_status_error

log = logging.getLogger("adaptive_proxy.upstream")

_T = TypeVar("_T")
_MAX_RETRY_AFTER_S = 5.0
# Bounds the memory one SSE event may take; far above any real chunk.
_MAX_EVENT_BYTES = 64 * 1024 * 1024

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


@dataclass(frozen=True, slots=True)
class _Prepared:
    url: URL | None
    headers: dict[str, str]
    timeout: aiohttp.ClientTimeout
    stream_timeout: aiohttp.ClientTimeout


def _timed_out(name: str, cfg: UpstreamConfig) -> UpstreamTimeoutError:
    return UpstreamTimeoutError(
        f"upstream {name!r} did not answer within {cfg.timeout_s:g} s", upstream=name
    )


def _unreachable(name: str, exc: BaseException) -> UpstreamError:
    return UpstreamError(
        f"cannot reach upstream {name!r}: {type(exc).__name__}", upstream=name, retryable=True
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
        self._session = session
        self._env = env or {}
        self._observe = observe
        self.update(upstreams)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session (rerankers that call HTTP endpoints use it too)."""
        return self._session

    def update(self, upstreams: Mapping[str, UpstreamConfig]) -> None:
        """Swap in a reloaded set of upstreams; requests in flight keep what they started with."""
        # URL, headers and timeouts are built once per upstream, not on every request.
        self._prepared = {name: self._prepare(cfg) for name, cfg in upstreams.items()}
        self._upstreams = dict(upstreams)

    def _prepare(self, cfg: UpstreamConfig) -> _Prepared:
        url = URL(cfg.base_url.rstrip("/") + "/chat/completions") if cfg.base_url else None
        return _Prepared(
            url=url,
            headers=self._headers(cfg),
            timeout=aiohttp.ClientTimeout(total=cfg.timeout_s, connect=cfg.connect_timeout_s),
            stream_timeout=aiohttp.ClientTimeout(
                total=None, connect=cfg.connect_timeout_s, sock_read=cfg.timeout_s
            ),
        )

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
        data, attempts = await self._with_retries(
            name, cfg, started, lambda: self._post_json(name, cfg, payload)
        )
        return UpstreamReply(name, data, time.perf_counter() - started, attempts)

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
        stream, _ = await self._with_retries(
            name, cfg, started, lambda: self._open(name, cfg, payload)
        )
        return stream

    async def _with_retries(
        self,
        name: str,
        cfg: UpstreamConfig,
        started: float,
        attempt_once: Callable[[], Awaitable[_T]],
    ) -> tuple[_T, int]:
        """One upstream attempt, retried with backoff while retryable; (result, attempts)."""
        attempt = 0
        while True:
            try:
                result = await attempt_once()
            except UpstreamError as error:
                self._record(name, started, error.status)
                if not error.retryable or attempt >= cfg.retries:
                    raise
                log.info(
                    "upstream %s: %s; retry %d/%d", name, error.message, attempt + 1, cfg.retries
                )
                await self._backoff(cfg, attempt, error)
                attempt += 1
            else:
                self._record(name, started, 200)
                return result, attempt + 1

    async def _send(
        self,
        name: str,
        cfg: UpstreamConfig,
        payload: dict[str, Any],
        client_timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """POST one request; non-2xx answers and transport failures become UpstreamError."""
        prepared = self._prepared[name]
        assert prepared.url is not None
        try:
            resp = await self._session.post(
                prepared.url,
                data=orjson.dumps(payload),
                headers=prepared.headers,
                timeout=client_timeout,
            )
        except TimeoutError:
            raise _timed_out(name, cfg) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(name, exc) from None
        if resp.status >= 400:
            try:
                body = await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            finally:
                resp.release()
            raise map_status_error(name, resp.status, body, resp.headers)
        return resp

    async def _post_json(
        self, name: str, cfg: UpstreamConfig, payload: dict[str, Any]
    ) -> dict[str, Any]:
        resp = await self._send(name, cfg, payload, self._prepared[name].timeout)
        try:
            body = await resp.read()
        except TimeoutError:
            raise _timed_out(name, cfg) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(name, exc) from None
        finally:
            resp.release()
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

    async def _open(
        self, name: str, cfg: UpstreamConfig, payload: dict[str, Any]
    ) -> UpstreamStream:
        # A stream may legitimately run long: its timeout bounds the gaps between bytes.
        resp = await self._send(name, cfg, payload, self._prepared[name].stream_timeout)
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
    pending = bytearray()  # bytes after the last newline seen
    try:
        # Lines are split here, not with ``resp.content.readline()``: its line limit (512 KiB in
        # aiohttp 3.14) raises a non-``ClientError`` on one large chunk (a big tool-call argument).
        async for data in resp.content.iter_any():
            searched = len(pending)  # the carried-over tail holds no newline
            pending += data
            for line in _take_lines(pending, searched):
                if line in (b"\n", b"\r\n"):
                    if buffer:
                        yield bytes(buffer) + b"\n"
                        buffer.clear()
                    continue
                if line.startswith(b":"):
                    continue  # upstream keep-alive comments are the proxy's own business
                buffer += _field_line(line)
            if len(buffer) + len(pending) > _MAX_EVENT_BYTES:
                raise UpstreamError(
                    f"upstream {name!r} sent an SSE event over {_MAX_EVENT_BYTES} bytes",
                    upstream=name,
                )
        if pending and not pending.startswith(b":"):
            buffer += _field_line(bytes(pending))
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


def _take_lines(pending: bytearray, searched: int) -> list[bytes]:
    """Remove and return the complete lines (with their newline) at the start of ``pending``."""
    lines: list[bytes] = []
    start = 0
    while (end := pending.find(b"\n", max(start, searched))) >= 0:
        lines.append(bytes(pending[start : end + 1]))
        start = end + 1
    del pending[:start]
    return lines


def _field_line(line: bytes) -> bytes:
    """One SSE field line, ``\\n``-terminated, with ``data:`` spelled as clients expect it."""
    if line.startswith(b"data:") and not line.startswith(b"data: "):
        line = b"data: " + line[5:]  # the space is optional in SSE; downstream checks expect it
    return line.rstrip(b"\r\n") + b"\n"
