"""Calls to upstream models: one shared ``aiohttp.ClientSession``, retries, error mapping.

Every outgoing call to an upstream goes through :class:`UpstreamClient`: chat completions
(``chat``, ``open_stream``) and the forwarded non-chat endpoints (``forward``, ``read_answer``).

OpenAI-compatible upstreams (OpenAI, vLLM, Ollama, llama.cpp, the replay upstream) go through
aiohttp directly. Any other ``provider`` goes through litellm, imported only when such an upstream
is called (see :mod:`proxy.upstream.litellm_adapter`).

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

from proxy.config.schema import UpstreamConfig
from proxy.upstream.redact import Redactor
from proxy.upstream.sse_reader import checked_events, sse_events, too_large
from proxy.wire.errors import UpstreamError, UpstreamTimeoutError, map_status_error

log = logging.getLogger("adaptive_proxy.upstream")

_T = TypeVar("_T")
_MAX_RETRY_AFTER_S = 5.0

UpstreamObserver = Callable[[str, float, int], None]
# Called with (upstream, reason) when an answer is refused: "malformed_stream", "too_large".
BadResponseCounter = Callable[[str, str], None]


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
        redactor: Redactor | None = None,
        count_bad_response: BadResponseCounter | None = None,
    ) -> None:
        self._session = session
        self._env = env or {}
        self._observe = observe
        self._count_bad_response = count_bad_response
        self.update(upstreams, redactor=redactor)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session (rerankers that call HTTP endpoints use it too)."""
        return self._session

    def update(
        self, upstreams: Mapping[str, UpstreamConfig], *, redactor: Redactor | None = None
    ) -> None:
        """Swap in a reloaded set of upstreams; requests in flight keep what they started with.

        ``redactor`` (built from the whole config) removes secrets from upstream answers.
        """
        self.redactor = redactor or Redactor(())
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

    def request_headers(self, name: str) -> dict[str, str]:
        """The proxy's own headers for upstream ``name`` (its API key, configured headers)."""
        return dict(self._prepared[name].headers)

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

    async def forward(
        self,
        name: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str],
        body: bytes,
        headers: Mapping[str, str],
    ) -> tuple[aiohttp.ClientResponse, float]:
        """A non-chat request sent byte for byte to ``path`` under upstream ``name``'s
        ``base_url``: its open answer (status < 400) and latency in seconds.

        Errors and retries before the first byte are chat's; the timeout bounds the gaps
        between bytes, as a stream's does (an upload or an audio answer may run long).
        """
        cfg = self._upstreams[name]
        assert cfg.base_url is not None
        url = URL(cfg.base_url.rstrip("/") + path).with_query(query)
        timeout = self._prepared[name].stream_timeout
        started = time.perf_counter()
        resp, _ = await self._with_retries(
            name,
            cfg,
            started,
            lambda: self._request(name, cfg, method, url, body or None, headers, timeout),
            status_of=lambda resp: resp.status,
        )
        return resp, time.perf_counter() - started

    async def read_answer(self, name: str, resp: aiohttp.ClientResponse) -> bytes:
        """The whole body of a forwarded answer, secrets removed; a stall is a 504 and a
        dropped connection a 502, as for a chat completion's body."""
        try:
            body = await resp.read()
        except TimeoutError:
            raise _timed_out(name, self._upstreams[name]) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(name, exc) from None
        return self.redactor.raw(body)

    async def _with_retries(
        self,
        name: str,
        cfg: UpstreamConfig,
        started: float,
        attempt_once: Callable[[], Awaitable[_T]],
        status_of: Callable[[_T], int] = lambda _: 200,
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
                self._record(name, started, status_of(result))
                return result, attempt + 1

    async def _send(
        self,
        name: str,
        cfg: UpstreamConfig,
        payload: dict[str, Any],
        client_timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """POST one chat request to upstream ``name``."""
        prepared = self._prepared[name]
        assert prepared.url is not None
        data = orjson.dumps(payload)
        return await self._request(
            name, cfg, "POST", prepared.url, data, prepared.headers, client_timeout
        )

    async def _request(
        self,
        name: str,
        cfg: UpstreamConfig,
        method: str,
        url: URL,
        data: bytes | None,
        headers: Mapping[str, str],
        client_timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """Send one request; non-2xx answers and transport failures become UpstreamError."""
        try:
            resp = await self._session.request(
                method, url, data=data, headers=headers, timeout=client_timeout
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
            raise map_status_error(name, resp.status, body, resp.headers, self.redactor.raw)
        return resp

    def _refuse(self, name: str, reason: str, error: UpstreamError) -> UpstreamError:
        if self._count_bad_response is not None:
            self._count_bad_response(name, reason)
        return error

    async def _read_bounded(
        self, name: str, cfg: UpstreamConfig, resp: aiohttp.ClientResponse
    ) -> bytes:
        """The whole body, refused past ``max_response_bytes`` without holding more of it."""
        limit = cfg.max_response_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise self._refuse(name, "too_large", too_large(name, limit))
        body = bytearray()
        async for data in resp.content.iter_any():
            body += data
            if len(body) > limit:
                raise self._refuse(name, "too_large", too_large(name, limit))
        return bytes(body)

    async def _post_json(
        self, name: str, cfg: UpstreamConfig, payload: dict[str, Any]
    ) -> dict[str, Any]:
        resp = await self._send(name, cfg, payload, self._prepared[name].timeout)
        try:
            body = await self._read_bounded(name, cfg, resp)
        except TimeoutError:
            raise _timed_out(name, cfg) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(name, exc) from None
        finally:
            resp.release()
        try:
            data = orjson.loads(self.redactor.raw(body))
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
        events = checked_events(name, cfg, sse_events(name, cfg, resp, self.redactor), self._refuse)
        return UpstreamStream(name, events, resp.close)

    async def _litellm_chat(
        self, name: str, cfg: UpstreamConfig, payload: dict[str, Any]
    ) -> UpstreamReply:
        from proxy.upstream.litellm_adapter import litellm_chat

        started = time.perf_counter()
        try:
            data = await litellm_chat(name, cfg, payload, self._api_key(cfg))
        except UpstreamError as error:
            raise self._redacted(error) from None
        self._record(name, started, 200)
        return UpstreamReply(name, data, time.perf_counter() - started, 1)

    async def _litellm_stream(
        self, name: str, cfg: UpstreamConfig, payload: dict[str, Any]
    ) -> UpstreamStream:
        from proxy.upstream.litellm_adapter import litellm_stream

        try:
            events, close = await litellm_stream(name, cfg, payload, self._api_key(cfg))
        except UpstreamError as error:
            raise self._redacted(error) from None
        return UpstreamStream(name, events, close)

    def _redacted(self, error: UpstreamError) -> UpstreamError:
        # litellm maps provider errors itself; their messages may quote the key as well.
        error.message = self.redactor.text(error.message)
        error.args = (error.message,)
        return error

    def _api_key(self, cfg: UpstreamConfig) -> str | None:
        return self._env.get(cfg.api_key_env) if cfg.api_key_env else None
