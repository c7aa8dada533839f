"""Executing a routed decision: one upstream call, JSON or SSE passed through chunk by chunk.

Produces the execution seam's :class:`~proxy.execute.seam.JsonResult` or
:class:`~proxy.execute.seam.EventStream`; :func:`proxy.http.sse.write_sse` writes streams. A
client
that disconnects cancels the handler (``handler_cancellation=True``), which closes the event
generator and with it the upstream response.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson

from proxy.execute.seam import EventStream, Execution, ExecutionRequest, JsonResult, Outcome
from proxy.policies.base import BasePolicy
from proxy.policies.decision import Decision
from proxy.policies.overrides import apply_overrides
from proxy.upstream.client import UpstreamClient, UpstreamReply, UpstreamStream
from proxy.upstream.pricing import (
    CostModel,
    UsageMetrics,
    account_usage,
    billed_tokens,
    reasoning_tokens_of,
    usage_of,
)
from proxy.wire.errors import ProxyError, UpstreamError
from proxy.wire.protocol import client_choices
from proxy.wire.tokens import count_message_tokens_async

log = logging.getLogger("adaptive_proxy.executor")
_T = TypeVar("_T")


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
        self,
        upstream: str,
        prompt_tokens: int,
        completion_tokens: int,
        n: int = 1,
        *,
        overrides: Mapping[str, Any] | None = None,
    ) -> float:
        """Record tokens and cost of a call of the arm (upstream, overrides); returns USD."""
        return account_usage(
            self._costs,
            self._metrics,
            upstream,
            prompt_tokens,
            completion_tokens,
            n,
            overrides=overrides,
        )

    async def _with_fallback(
        self,
        decision: Decision,
        fallback: str | None,
        call: Callable[[str, dict[str, Any]], Awaitable[_T]],
        body: dict[str, Any],
    ) -> _T:
        """``call`` the decided upstream, then the fallback upstream if that fails server-side.

        The decided arm's overrides go to the decided upstream only: a fallback is another
        model, which may not take them (a reasoning effort on a model without one is a 400).
        """
        try:
            return await call(
                decision.upstream,
                apply_overrides(body, decision.overrides, override_client=decision.override_client),
            )
        except ProxyError as error:
            if not fallback or fallback == decision.upstream or not _should_fall_back(error):
                raise
            log.warning(
                "upstream %s failed (%s); falling back to %s",
                decision.upstream,
                error.message,
                fallback,
            )
            return await call(fallback, body)

    async def chat(
        self, decision: Decision, body: dict[str, Any], fallback: str | None
    ) -> UpstreamReply:
        """Non-streaming call to the decided upstream, then the fallback upstream if it fails."""
        return await self._with_fallback(decision, fallback, self._upstreams.chat, body)

    async def execute(self, job: ExecutionRequest[BasePolicy | None]) -> Execution:
        """Run a routed decision: the completed JSON, or the upstream's events to pass through."""
        fallback = job.policy.fallback_upstream() if job.policy is not None else None
        if job.stream:
            return await self.open_events(job.decision, job.body, fallback, job.include_usage)
        return await self.respond_json(job.decision, job.body, fallback)

    async def respond_json(
        self, decision: Decision, body: dict[str, Any], fallback: str | None
    ) -> JsonResult:
        """The completed response body (with ``adaptive`` and summed ``usage``)."""
        reply = await self.chat(decision, body, fallback)
        data = reply.data
        prompt_tokens, completion_tokens = await usage_of(data, body["messages"])
        data.setdefault(
            "usage",
            {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        )
        overrides = decision.overrides if reply.upstream == decision.upstream else None
        cost = self.account(reply.upstream, prompt_tokens, completion_tokens, overrides=overrides)
        adaptive = decision.adaptive()
        reasoning = reasoning_tokens_of(data.get("usage"))
        if reasoning is not None:
            adaptive["reasoning_tokens"] = reasoning
        # Samples drawn: the upstream drew one per choice the client asked for.
        drawn = len(data.get("choices") or ()) or 1
        adaptive["n"] = drawn
        adaptive["choices"] = drawn
        adaptive["cost_usd"] = cost
        adaptive["upstream_latency_ms"] = round(reply.latency_s * 1000, 3)
        outcome = Outcome(
            cost_usd=cost,
            n_samples=drawn,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            upstream_latency_ms=adaptive["upstream_latency_ms"],
        )
        headers = decision.headers()
        headers["x-adaptive-n"] = headers["x-adaptive-choices"] = str(drawn)
        if reply.upstream != decision.upstream:
            adaptive["fallback_upstream"] = reply.upstream
            headers["x-adaptive-fallback"] = reply.upstream
            outcome.fallback_upstream = reply.upstream
        data["adaptive"] = adaptive
        return JsonResult(data, headers, outcome)

    async def open_events(
        self, decision: Decision, body: dict[str, Any], fallback: str | None, include_usage: bool
    ) -> EventStream:
        """Open the upstream stream (falling back before the first byte only)."""
        started = time.perf_counter()
        upstream_stream = await self._with_fallback(
            decision,
            fallback,
            lambda name, sent: self._upstreams.open_stream(name, sent, include_usage=include_usage),
            body,
        )
        # Until the status line: the time to first byte, which is what a stream waits for.
        drawn = client_choices(body)
        outcome = Outcome(
            n_samples=drawn, upstream_latency_ms=round((time.perf_counter() - started) * 1000, 3)
        )
        headers = decision.headers()
        headers["x-adaptive-n"] = headers["x-adaptive-choices"] = str(drawn)
        if upstream_stream.upstream != decision.upstream:
            headers["x-adaptive-fallback"] = upstream_stream.upstream
            outcome.fallback_upstream = upstream_stream.upstream

        def adaptive() -> dict[str, Any]:
            out = decision.adaptive()
            out["n"] = out["choices"] = drawn
            if upstream_stream.upstream != decision.upstream:
                out["fallback_upstream"] = upstream_stream.upstream
            return out

        overrides = decision.overrides if upstream_stream.upstream == decision.upstream else None
        return EventStream(
            events=self._relay(
                upstream_stream, outcome, include_usage, body["messages"], overrides
            ),
            adaptive=adaptive,
            headers=headers,
            outcome=outcome,
            source=upstream_stream.upstream,
        )

    async def _relay(
        self,
        stream: UpstreamStream,
        outcome: Outcome,
        include_usage: bool,
        messages: list[dict[str, Any]],
        overrides: Mapping[str, Any] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """The upstream's events up to ``[DONE]``, usage taken for accounting on the way."""
        prompt_tokens = completion_tokens = 0
        usage_seen = False
        # Account in ``finally``: a client that disconnects mid-stream closes this generator,
        # and the upstream still bills what it generated.
        try:
            async for event in stream:
                if event.startswith(b"data: [DONE]"):
                    break
                if b'"usage"' in event:
                    usage, has_choices = _usage_of_event(event)
                    billed = billed_tokens(usage)
                    if usage is not None:
                        usage_seen = True
                        prompt_tokens, completion_tokens = billed or (0, 0)
                        if not include_usage and not has_choices:
                            continue  # the proxy asked for usage for its own accounting
                yield event
        finally:
            await stream.aclose()
            if not usage_seen:
                prompt_tokens = await count_message_tokens_async(messages)
            outcome.cost_usd = self.account(
                stream.upstream, prompt_tokens, completion_tokens, overrides=overrides
            )
            outcome.prompt_tokens, outcome.completion_tokens = prompt_tokens, completion_tokens


def _usage_of_event(event: bytes) -> tuple[Mapping[str, Any] | None, bool]:
    try:
        payload = orjson.loads(event[6:]) if event.startswith(b"data: ") else None
    except orjson.JSONDecodeError:
        return None, True
    if not isinstance(payload, dict):
        return None, True
    usage = payload.get("usage")
    return (usage if isinstance(usage, dict) else None), bool(payload.get("choices"))
