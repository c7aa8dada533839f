"""The execution seam: what executing a decision takes and produces.

Every :class:`Executor` (route, best-of-k, and any later one; :mod:`proxy.execute.registry`
picks the one a decision needs by its policy's class) turns an :class:`ExecutionRequest`
into either a :class:`JsonResult` or an :class:`EventStream`. :func:`proxy.http.sse.write_sse`
alone turns a stream into the HTTP response. Executors return data and never touch
``aiohttp.web``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import orjson

from proxy.learn.records import CascadeEvidence, SequentialEvidence
from proxy.policies.base import BasePolicy
from proxy.policies.decision import Decision
from proxy.wire.protocol import sse_event


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
    # What the request showed, for the outcome log of ``learn: true`` policies: a sequential
    # request's samples and rounds, a cascade's stages (a route's arm is the decision's).
    evidence: SequentialEvidence | CascadeEvidence | None = None

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
        self.evidence = other.evidence or self.evidence


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

# The policy class an executor runs: :mod:`proxy.execute.registry` hands each executor the
# requests of the classes it is registered for, so no executor downcasts (covariant: a request
# of a best_of_k policy is a request of a policy, as the shared stream assembly reads it).
PolicyT = TypeVar("PolicyT", bound="BasePolicy | None", covariant=True)


@dataclass(frozen=True, slots=True)
class ExecutionRequest(Generic[PolicyT]):
    """One decided request, as an executor receives it."""

    decision: Decision
    # ``None``: the client named an upstream model directly (passthrough, no policy).
    policy: PolicyT
    body: dict[str, Any]
    stream: bool
    include_usage: bool
    keepalive_interval_s: float


class Executor(Protocol):
    """Runs decisions of one kind against the upstreams."""

    async def execute(self, job: ExecutionRequest[Any]) -> Execution:
        """The completed JSON, or the events to stream."""
        ...


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
