"""A scripted fake OpenAI-compatible upstream, and a proxy stack in front of it, for tests.

The fake is a real aiohttp server on an ephemeral port. Each request to ``/v1/chat/completions``
consumes the next scripted action (``Reply``, ``Hang``, ``Stream``); with the script empty it
answers like a healthy model (JSON, or SSE when ``stream`` is set, usage chunk iff asked). It
records every request body and headers, and sets :attr:`FakeUpstream.cancelled` when a request
is cancelled by the peer (the proxy) closing its connection.

A request with ``reasoning_effort`` is answered like a reasoning model: the content names the
effort (``"thought at effort high"``) and ``usage`` reports
``completion_tokens_details.reasoning_tokens`` (:data:`REASONING_TOKENS`, counted inside
``completion_tokens`` as OpenAI does), streamed or not.

Every other ``/v1`` path (embeddings, completions, audio, images, …) is answered by
:meth:`FakeUpstream._other`: the next scripted action when there is one, else a plausible
answer (embeddings in float or base64, SSE for ``stream``, audio bytes for speech, the size of
a multipart upload for transcriptions). Those requests are kept raw in :attr:`FakeUpstream.raw`.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import openai
import orjson
from aiohttp import web

from proxy.config.schema import Config
from proxy.decide.prediction import HashPredictor, Predictor
from proxy.http.app import create_app
from proxy.http.server import RunningSite, start_site

_FOREVER_S = 3600.0


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer with ``status``, a JSON body (or raw bytes) and extra headers."""

    status: int = 200
    body: Mapping[str, Any] | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer (sleep until the proxy gives up and closes the connection)."""


@dataclass(frozen=True, slots=True)
class Stream:
    """Answer with SSE ``chunks``; then ``[DONE]``, a drop, or a hang.

    A mapping is sent as one ``data: <json>`` event; bytes are written to the wire as they are.
    """

    chunks: tuple[Mapping[str, Any] | bytes, ...]
    end: str = "done"  # "done" | "drop" | "hang"
    content_type: str = "text/event-stream"


Action = Reply | Hang | Stream


@dataclass(frozen=True, slots=True)
class RawRequest:
    """A non-chat request exactly as the fake received it."""

    method: str
    path_qs: str
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the fake saw it."""

    body: dict[str, Any]
    headers: Mapping[str, str]


def completion(model: str, content: str | None = "hello", **message: Any) -> dict[str, Any]:
    """A complete non-streaming chat completion."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


#: Reasoning tokens the fake reports per ``reasoning_effort`` (the visible answer is 3 tokens).
REASONING_TOKENS = {"none": 0, "minimal": 5, "low": 20, "medium": 100, "high": 400}
VISIBLE_TOKENS = 3


def effort_usage(effort: str) -> dict[str, Any]:
    """``usage`` of an answer at ``effort``: reasoning tokens inside ``completion_tokens``."""
    reasoning = REASONING_TOKENS[effort]
    completion_tokens = VISIBLE_TOKENS + reasoning
    return {
        "prompt_tokens": 7,
        "completion_tokens": completion_tokens,
        "total_tokens": 7 + completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def effort_completion(model: str, effort: str) -> dict[str, Any]:
    """A reasoning model's answer at ``effort``."""
    body = completion(model, f"thought at effort {effort}")
    body["usage"] = effort_usage(effort)
    return body


def chunk(
    model: str, delta: Mapping[str, Any], *, finish: str | None = None, usage_field: bool = False
) -> dict[str, Any]:
    """One streaming chunk; ``usage_field`` adds OpenAI's ``"usage": null``."""
    out: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish}],
    }
    if usage_field:
        out["usage"] = None
    return out


def usage_chunk(model: str) -> dict[str, Any]:
    """The final usage-only chunk OpenAI sends when ``include_usage`` is set."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def text_chunks(model: str, parts: tuple[str, ...], *, usage: bool) -> tuple[dict[str, Any], ...]:
    """Chunks spelling ``parts`` then a stop, plus the usage chunk iff ``usage``."""
    out = [chunk(model, {"role": "assistant", "content": ""}, usage_field=usage)]
    out += [chunk(model, {"content": p}, usage_field=usage) for p in parts]
    out.append(chunk(model, {}, finish="stop", usage_field=usage))
    if usage:
        out.append(usage_chunk(model))
    return tuple(out)


class FakeUpstream:
    """The scripted upstream; use :meth:`script` to queue actions, then read :attr:`requests`."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.raw: list[RawRequest] = []
        self.received = asyncio.Event()
        self.cancelled = asyncio.Event()
        self._script: deque[Action] = deque()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def script(self, *actions: Action) -> None:
        """Queue actions for the next requests, in order."""
        self._script.extend(actions)

    async def start(self) -> str:
        """Listen on an ephemeral port; returns the ``/v1`` base URL."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_route("*", "/v1/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def close(self) -> None:
        """Stop the server (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(Received(body, dict(request.headers)))
        self.received.set()
        action = self._script.popleft() if self._script else None
        try:
            if action is None:
                return await self._healthy(request, body)
            if isinstance(action, Hang):
                await asyncio.sleep(_FOREVER_S)
                raise AssertionError("unreachable")
            if isinstance(action, Reply):
                return _reply(action)
            return await self._stream(request, action)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def _other(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.raw.append(RawRequest(request.method, request.path_qs, raw, dict(request.headers)))
        action = self._script.popleft() if self._script else None
        if isinstance(action, Hang):
            await asyncio.sleep(_FOREVER_S)
        if isinstance(action, Reply):
            return _reply(action)
        if isinstance(action, Stream):
            return await self._stream(request, action)
        tail = request.match_info["tail"]
        if request.content_type == "multipart/form-data":
            return web.json_response({"text": f"{len(raw)} bytes received"})
        body = orjson.loads(raw) if raw else {}
        model = str(body.get("model"))
        if tail == "embeddings":
            return web.json_response(_embeddings(model, body))
        if tail == "audio/speech":
            return web.Response(body=b"ID3-fake-audio" * 100, content_type="audio/mpeg")
        if body.get("stream"):
            parts = tuple({"model": model, "choices": [{"index": 0, "text": t}]} for t in "abc")
            return await self._stream(request, Stream(parts))
        return web.json_response({"object": tail, "model": model, "usage": {"prompt_tokens": 3}})

    async def _healthy(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        model = str(body.get("model"))
        effort = body.get("reasoning_effort")
        if isinstance(effort, str):
            return await self._reasoning(request, body, model, effort)
        if not body.get("stream"):
            return _reply(Reply(body=completion(model)))
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await self._stream(
            request, Stream(text_chunks(model, ("Hel", "lo", "!"), usage=usage))
        )

    async def _reasoning(
        self, request: web.Request, body: dict[str, Any], model: str, effort: str
    ) -> web.StreamResponse:
        if effort not in REASONING_TOKENS:
            error = {"error": {"message": f"unsupported reasoning_effort {effort!r}"}}
            return _reply(Reply(status=400, body=error))
        if not body.get("stream"):
            return _reply(Reply(body=effort_completion(model, effort)))
        chunks = list(text_chunks(model, ("thought at effort ", effort), usage=False))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**usage_chunk(model), "usage": effort_usage(effort)})
        return await self._stream(request, Stream(tuple(chunks)))

    async def _stream(self, request: web.Request, action: Stream) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": action.content_type})
        await response.prepare(request)
        for payload in action.chunks:
            if isinstance(payload, bytes):
                await response.write(payload)
            else:
                await response.write(b"data: " + orjson.dumps(payload) + b"\n\n")
        if action.end == "hang":
            await asyncio.sleep(_FOREVER_S)
        if action.end == "drop":
            # Closing the socket mid-body leaves the chunked response incomplete for the reader.
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _embeddings(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """One 3-dimensional embedding per input, ``[i, len(text), 0.5]``, floats or base64."""
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    data = []
    for i, text in enumerate(texts):
        vector = [float(i), float(len(text)), 0.5]
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack("<3f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    tokens = sum(len(str(t).split()) for t in texts)
    return {
        "object": "list",
        "model": model,
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _reply(action: Reply) -> web.Response:
    raw = action.body if isinstance(action.body, bytes) else orjson.dumps(action.body or {})
    return web.Response(
        status=action.status,
        body=raw,
        headers={"Content-Type": "application/json", **action.headers},
    )


def closed_port() -> int:
    """A local port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


PRIMARY_MODEL = "fake-primary-model"
BACKUP_MODEL = "fake-backup-model"


def stack_config(
    primary_url: str,
    backup_url: str,
    *,
    max_body_bytes: int = 65536,
    api_key_env: str | None = None,
    server: Mapping[str, Any] | None = None,
    upstream_extra: Mapping[str, Any] | None = None,
    predictor_config: Mapping[str, Any] | None = None,
) -> Config:
    """Upstreams ``primary``/``backup`` (retrying), ``slow`` (0.3 s timeout), ``dead`` (refused).

    Policies: ``auto`` routes to ``primary`` (the predictor is pinned to zero gain) with
    ``backup`` as fallback; ``safe`` is a passthrough to ``primary`` with the same fallback.
    """
    common: dict[str, Any] = {
        "retry_backoff_s": 0.01,
        "timeout_s": 10.0,
        "connect_timeout_s": 2.0,
        **(upstream_extra or {}),
    }
    if api_key_env is not None:
        common["api_key_env"] = api_key_env
    prices = {"price_in_per_mtok_usd": 1.0, "price_out_per_mtok_usd": 2.0}
    return Config.model_validate(
        {
            "server": {
                "max_body_bytes": max_body_bytes,
                "reload": False,
                "default_upstream": "primary",
                **(server or {}),
            },
            "upstreams": {
                "primary": {"base_url": primary_url, "model": PRIMARY_MODEL, "retries": 2}
                | common
                | prices,
                "backup": {"base_url": backup_url, "model": BACKUP_MODEL, "retries": 0}
                | common
                | prices,
                "slow": {"base_url": primary_url, "model": "fake-slow-model", "retries": 0}
                | common
                | {"timeout_s": 0.3},
                "dead": {
                    "base_url": f"http://127.0.0.1:{closed_port()}/v1",
                    "model": "fake-dead-model",
                    "retries": 1,
                }
                | common,
            },
            "policies": {
                "auto": {
                    "type": "route",
                    "cheap": "primary",
                    "expensive": "backup",
                    "threshold": 0.5,
                    "fallback": "backup",
                },
                "safe": {"type": "passthrough", "upstream": "primary", "fallback": "backup"},
            },
            "predictor": {"type": "hash", **(predictor_config or {})},
        }
    )


@dataclass(slots=True)
class Stack:
    """A running proxy in front of two fake upstreams, with an SDK client pointed at it."""

    primary: FakeUpstream
    backup: FakeUpstream
    base_url: str
    client: openai.AsyncOpenAI
    runner: web.AppRunner


@asynccontextmanager
async def proxy_stack(
    *,
    max_body_bytes: int = 65536,
    env: Mapping[str, str] | None = None,
    api_key_env: str | None = None,
    server: Mapping[str, Any] | None = None,
    upstream_extra: Mapping[str, Any] | None = None,
    predictor_config: Mapping[str, Any] | None = None,
    predictor: Predictor | None = None,
) -> AsyncIterator[Stack]:
    """Start fakes and the real proxy on port 0; everything is closed on exit.

    ``env`` is the proxy's environment (API keys), ``api_key_env`` names the key every upstream
    sends, ``server``, ``upstream_extra`` and ``predictor_config`` add keys to those YAML
    sections; ``predictor`` replaces the default one (pinned to zero gain).
    """
    primary, backup = FakeUpstream(), FakeUpstream()
    site: RunningSite | None = None
    client: openai.AsyncOpenAI | None = None
    try:
        config = stack_config(
            await primary.start(),
            await backup.start(),
            max_body_bytes=max_body_bytes,
            api_key_env=api_key_env,
            server=server,
            upstream_extra=upstream_extra,
            predictor_config=predictor_config,
        )
        # Zero gain for every prompt: ``auto`` always takes its cheap arm, ``primary``.
        if predictor is None:
            predictor = HashPredictor(overrides={"": {"p_weak": 0.5, "p_strong": 0.5}})
        site = await start_site(create_app(config, predictor=predictor, env=env))
        client = openai.AsyncOpenAI(base_url=f"{site.url}/v1", api_key="x", max_retries=0)
        yield Stack(primary, backup, site.url, client, site.runner)
    finally:
        if client is not None:
            await client.close()
        if site is not None and site.runner.server is not None:  # a test may have shut it down
            await site.close()
        await primary.close()
        await backup.close()
