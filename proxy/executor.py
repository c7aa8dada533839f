"""Executing a routed decision: one upstream call, JSON or SSE passed through chunk by chunk.

Streaming honesty: once the SSE response has started, an upstream failure is reported as a
``data: {"error": …}`` event followed by ``data: [DONE]`` (the status line is already sent). A
client that disconnects cancels the handler (``handler_cancellation=True``), which closes the
upstream response in ``finally``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson
from aiohttp import web

from proxy.errors import ProxyError, UpstreamError
from proxy.policies.base import Decision
from proxy.pricing import CostModel, usage_of
from proxy.protocol import SSE_DONE, sse_event
from proxy.upstream import UpstreamClient, UpstreamReply, UpstreamStream

log = logging.getLogger("adaptive_proxy.executor")
_T = TypeVar("_T")


class UsageMetrics(Protocol):
    """Usage and cost accounting (implemented by :class:`proxy.metrics.Metrics`)."""

    def record_usage(
        self, upstream: str, prompt_tokens: int, completion_tokens: int, cost_usd: float
    ) -> None: ...


@dataclass(slots=True)
class Outcome:
    """What a request cost, for logs and metrics."""

    upstream: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


def _should_fall_back(error: ProxyError) -> bool:
    # A client error (bad params) would fail the same way on the fallback; server trouble may not.
    return isinstance(error, UpstreamError) and (error.status >= 500 or error.status == 429)


class RouteExecutor:
    """Runs route and passthrough decisions against the upstreams."""

    def __init__(self, upstreams: UpstreamClient, costs: CostModel, metrics: UsageMetrics) -> None:
        self._upstreams = upstreams
        self._costs = costs
        self._metrics = metrics

    def account(
        self, upstream: str, prompt_tokens: int, completion_tokens: int, n: int = 1
    ) -> float:
        """Record tokens and cost of a call; returns its cost in USD."""
        cost = self._costs.observe(upstream, prompt_tokens, completion_tokens, n)
        self._metrics.record_usage(upstream, prompt_tokens, completion_tokens, cost)
        return cost

    async def _with_fallback(
        self, decision: Decision, fallback: str | None, call: Callable[[str], Awaitable[_T]]
    ) -> _T:
        """``call`` the decided upstream, then the fallback upstream if that fails server-side."""
        try:
            return await call(decision.upstream)
        except ProxyError as error:
            if not fallback or fallback == decision.upstream or not _should_fall_back(error):
                raise
            log.warning(
                "upstream %s failed (%s); falling back to %s",
                decision.upstream,
                error.message,
                fallback,
            )
            return await call(fallback)

    async def chat(
        self, decision: Decision, body: dict[str, Any], fallback: str | None
    ) -> UpstreamReply:
        """Non-streaming call to the decided upstream, then the fallback upstream if it fails."""
        return await self._with_fallback(
            decision, fallback, lambda name: self._upstreams.chat(name, body)
        )

    async def respond_json(
        self, decision: Decision, body: dict[str, Any], fallback: str | None
    ) -> tuple[dict[str, Any], Outcome]:
        """The completed response body (with ``adaptive`` and summed ``usage``)."""
        reply = await self.chat(decision, body, fallback)
        data = reply.data
        prompt_tokens, completion_tokens = usage_of(data, body["messages"])
        data.setdefault(
            "usage",
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        )
        cost = self.account(reply.upstream, prompt_tokens, completion_tokens)
        adaptive = decision.adaptive()
        adaptive["cost_usd"] = cost
        adaptive["upstream_latency_ms"] = round(reply.latency_s * 1000, 3)
        if reply.upstream != decision.upstream:
            adaptive["fallback_upstream"] = reply.upstream
        data["adaptive"] = adaptive
        return data, Outcome(reply.upstream, prompt_tokens, completion_tokens, cost)

    async def open_stream(
        self, decision: Decision, body: dict[str, Any], fallback: str | None, include_usage: bool
    ) -> UpstreamStream:
        """Open the upstream stream (falling back before the first byte only)."""
        return await self._with_fallback(
            decision,
            fallback,
            lambda name: self._upstreams.open_stream(name, body, include_usage=include_usage),
        )

    async def pipe_stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        stream: UpstreamStream,
        decision: Decision,
        *,
        include_usage: bool,
        messages: list[dict[str, Any]],
    ) -> Outcome:
        """Forward SSE events as they come; the first carries ``adaptive``; errors end honestly."""
        outcome = Outcome(stream.upstream)
        first = True
        usage_seen = False
        # Account in ``finally``: a client that disconnects mid-stream cancels this task, and
        # the upstream still bills what it generated.
        try:
            try:
                async for event in stream:
                    if event.startswith(b"data: [DONE]"):
                        break
                    if first:
                        event = _with_adaptive(event, decision, stream.upstream)
                        first = False
                    elif b'"usage"' in event:
                        usage, has_choices = _usage_of_event(event)
                        if usage is not None:
                            usage_seen = True
                            outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                            outcome.completion_tokens = int(usage.get("completion_tokens") or 0)
                            if not include_usage and not has_choices:
                                continue  # the proxy asked for usage for its own accounting
                    await response.write(event)
            except ProxyError as error:
                log.warning("stream from %s failed mid-way: %s", stream.upstream, error.message)
                await response.write(sse_event(error.to_dict()))
            except ConnectionError:
                raise  # the client is gone; there is no one left to tell
            except Exception:
                # The status line is out, so the error middleware can no longer answer; without
                # this the client would wait on a stream that never ends.
                log.exception("stream from %s broke", stream.upstream)
                internal = ProxyError("internal error in the proxy; see its log")
                await response.write(sse_event(internal.to_dict()))
            finally:
                await stream.aclose()
            await response.write(SSE_DONE)
        finally:
            if not usage_seen:
                outcome.prompt_tokens = _count_prompt(messages)
            outcome.cost_usd = self.account(
                stream.upstream, outcome.prompt_tokens, outcome.completion_tokens
            )
        return outcome


def _with_adaptive(event: bytes, decision: Decision, upstream: str) -> bytes:
    if not event.startswith(b"data: "):
        return event
    try:
        payload = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return event
    if not isinstance(payload, dict):
        return event
    adaptive = decision.adaptive()
    if upstream != decision.upstream:
        adaptive["fallback_upstream"] = upstream
    payload["adaptive"] = adaptive
    return sse_event(payload)


def _usage_of_event(event: bytes) -> tuple[Mapping[str, Any] | None, bool]:
    try:
        payload = orjson.loads(event[6:]) if event.startswith(b"data: ") else None
    except orjson.JSONDecodeError:
        return None, True
    if not isinstance(payload, dict):
        return None, True
    usage = payload.get("usage")
    return (usage if isinstance(usage, dict) else None), bool(payload.get("choices"))


def _count_prompt(messages: list[dict[str, Any]]) -> int:
    from proxy.tokens import count_message_tokens

    return count_message_tokens(messages)
