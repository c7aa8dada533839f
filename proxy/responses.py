"""The execution seam: what executing a decision takes and produces, and the one SSE writer.

Every :class:`Executor` (route, best-of-k, and any later one, registered by name in
:func:`proxy.app.create_app`; a policy names the one its decision needs with
:meth:`~proxy.policies.policy.BasePolicy.executor_name`) turns an :class:`ExecutionRequest`
into either a :class:`JsonResult` or an :class:`EventStream`. :func:`write_sse` alone turns a
stream into the HTTP response: it starts the stream, puts the ``adaptive`` object into the first
data chunk, sends ``: keep-alive`` comments while the stream's ``warmup`` runs, reports a failure
after the status line as ``data: {"error": …}``, and always ends with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web

from proxy.errors import ProxyError
from proxy.middleware import STREAM_STARTED
from proxy.policies.base import Decision
from proxy.policies.policy import BasePolicy
from proxy.protocol import SSE_DONE, SSE_KEEPALIVE, sse_event

log = logging.getLogger("adaptive_proxy.responses")

_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


@dataclass(slots=True)
class Outcome:
    """What a request cost, filled in by its executor (budget controller, access log)."""

    cost_usd: float = 0.0
    n_samples: int = 0
    # A choice the executor only learned while executing (a cascade's escalation), replacing
    # the decision's own ``problem``/``arm_index`` for the budget controller.
    problem: Any = None
    arm_index: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    upstream_latency_ms: float | None = None
    # The upstream that answered when it is not the decided one (the policy's fallback).
    fallback_upstream: str | None = None
    # The arm and upstream that answered when the executor chose them itself (a cascade's stage).
    answered_by: tuple[str, str] | None = None

    @classmethod
    def of_completion(cls, body: dict[str, Any], n_samples: int) -> Outcome:
        """The outcome of a chat completion the proxy assembled (cost, samples, usage)."""
        usage = body.get("usage") or {}
        return cls(
            cost_usd=float(body["adaptive"]["cost_usd"]),
            n_samples=n_samples,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def take(self, other: Outcome) -> None:
        """Copy what ``other`` measured into this (shared) outcome."""
        self.cost_usd, self.n_samples = other.cost_usd, other.n_samples
        self.prompt_tokens, self.completion_tokens = other.prompt_tokens, other.completion_tokens


@dataclass(slots=True)
class JsonResult:
    """A complete chat completion (``adaptive`` included) and its response headers."""

    body: dict[str, Any]
    headers: dict[str, str]
    outcome: Outcome


@dataclass(slots=True)
class EventStream:
    """A chat completion as SSE events (encoded, without ``[DONE]``).

    ``adaptive`` is called once, when the first data event is written. ``warmup`` is work that
    must finish before the first event (best-of-k's sampling); keep-alives cover it.
    """

    events: AsyncGenerator[bytes, None]
    adaptive: Callable[[], dict[str, Any]]
    headers: dict[str, str]
    outcome: Outcome
    warmup: Awaitable[Any] | None = None
    keepalive_interval_s: float = 5.0
    source: str = field(default="proxy")


Execution = JsonResult | EventStream


@dataclass(frozen=True, slots=True)
class ExecutionRequest:
    """One decided request, as an executor receives it."""

    decision: Decision
    # ``None``: the client named an upstream model directly (passthrough, no policy).
    policy: BasePolicy | None
    body: dict[str, Any]
    stream: bool
    include_usage: bool
    keepalive_interval_s: float


class Executor(Protocol):
    """Runs decisions of one kind against the upstreams."""

    async def execute(self, job: ExecutionRequest) -> Execution:
        """The completed JSON, or the events to stream."""
        ...


def json_response(result: JsonResult) -> web.Response:
    """The HTTP response of a complete completion."""
    return web.Response(
        body=orjson.dumps(result.body), content_type="application/json", headers=result.headers
    )


def with_adaptive(event: bytes, adaptive: dict[str, Any]) -> bytes:
    """The data event with ``adaptive`` added to its JSON object (other events unchanged)."""
    try:
        payload = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return event
    if not isinstance(payload, dict):
        return event
    payload["adaptive"] = adaptive
    return sse_event(payload)


async def _await_with_keepalives(
    response: web.StreamResponse, warmup: Awaitable[Any], interval_s: float
) -> None:
    work = asyncio.ensure_future(warmup)
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=interval_s)
            if done:
                break
            await response.write(SSE_KEEPALIVE)
        work.result()
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work


async def write_sse(request: web.Request, stream: EventStream) -> web.StreamResponse:
    """Send ``stream`` as the SSE response; failures after the status line end it honestly."""
    response = web.StreamResponse(headers={**_SSE_HEADERS, **stream.headers})
    events = stream.events
    try:
        await response.prepare(request)
        request[STREAM_STARTED] = response
    except BaseException:
        if isinstance(stream.warmup, asyncio.Future):
            stream.warmup.cancel()
        await events.aclose()
        raise
    try:
        if stream.warmup is not None:
            await _await_with_keepalives(response, stream.warmup, stream.keepalive_interval_s)
        first = True
        async for event in events:
            if first and event.startswith(b"data: "):
                event = with_adaptive(event, stream.adaptive())
                first = False
            await response.write(event)
    except ProxyError as error:
        log.warning("stream from %s failed mid-way: %s", stream.source, error.message)
        await response.write(sse_event(error.to_dict()))
    except ConnectionError:
        raise  # the client is gone; there is no one left to tell
    except Exception:
        # The status line is out, so the error middleware can no longer answer; without this
        # the client would wait on a stream that never ends.
        log.exception("stream from %s broke", stream.source)
        internal = ProxyError("internal error in the proxy; see its log")
        await response.write(sse_event(internal.to_dict()))
    finally:
        await events.aclose()
    await response.write(SSE_DONE)
    await response.write_eof()
    return response
