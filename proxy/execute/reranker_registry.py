"""The reranker registry: the reranker spec's ``type`` → the function that builds its reranker.

Adding a reranker type is its class in :mod:`proxy.execute.rerank`, its name in the ``type``
literal of :class:`proxy.policies.spec.RerankerConfig` (with any YAML fields it needs) and one
line in :data:`RERANKER_TYPES` (as :data:`proxy.policies.registry.POLICY_TYPES` ties a policy's
YAML ``type`` to its class).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from proxy.execute.rerank import (
    FirstReranker,
    JudgeReranker,
    Messages,
    Reranker,
    RerankResult,
    RewardReranker,
    VoteReranker,
)
from proxy.observe.tracing import Steps
from proxy.policies.spec import RerankerConfig
from proxy.upstream.client import UpstreamClient
from proxy.upstream.pricing import CostModel


@dataclass(frozen=True, slots=True)
class RerankerWiring:
    """What a reranker may call: the upstream client, the shared session, prices, environment."""

    upstreams: UpstreamClient
    session: aiohttp.ClientSession
    costs: CostModel
    env: Mapping[str, str]
    # Tracing on: reranker types that call out are wrapped in a span (off: not wrapped at all).
    steps: Steps | None = None


def _first(spec: RerankerConfig, wiring: RerankerWiring, structured: bool) -> Reranker:
    return FirstReranker()


def _vote(spec: RerankerConfig, wiring: RerankerWiring, structured: bool) -> Reranker:
    # Canonical tool calls or JSON are compared whole, not through an answer pattern.
    return VoteReranker(spec.pattern, exact=structured)


def _judge(spec: RerankerConfig, wiring: RerankerWiring, structured: bool) -> Reranker:
    assert spec.upstream is not None
    judge = spec.upstream
    upstreams = wiring.upstreams
    costs = wiring.costs

    async def chat(name: str, body: dict[str, Any]) -> dict[str, Any]:
        return (await upstreams.chat(name, body)).data

    def cost(usage: dict[str, int]) -> float:
        return costs.prices(judge).cost_usd(
            int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        )

    return JudgeReranker(
        chat,
        judge,
        template=spec.template,
        cost_fn=cost,
        structured_output=spec.structured_output,
    )


def _reward(spec: RerankerConfig, wiring: RerankerWiring, structured: bool) -> Reranker:
    assert spec.url is not None
    headers = {}
    if spec.api_key_env and wiring.env.get(spec.api_key_env):
        headers["Authorization"] = f"Bearer {wiring.env[spec.api_key_env]}"
    return RewardReranker(
        wiring.session,
        spec.url,
        request_format=spec.request_format,
        model=spec.model,
        scores_path=spec.scores_path,
        headers=headers,
        timeout_s=spec.timeout_s,
    )


# The builder's ``bool``: the candidates are canonical tool calls or JSON.
RERANKER_TYPES: dict[str, Callable[[RerankerConfig, RerankerWiring, bool], Reranker]] = {
    "first": _first,
    "vote": _vote,
    "judge": _judge,
    "reward": _reward,
}


def build_reranker(
    spec: RerankerConfig, wiring: RerankerWiring, *, structured: bool = False
) -> Reranker:
    """The reranker of ``spec`` (its ``type`` picks the builder), wired to ``wiring``;
    ``structured``: the candidates are canonical tool calls or JSON (``vote`` compares them
    whole)."""
    reranker = RERANKER_TYPES[spec.type](spec, wiring, structured)
    if wiring.steps is not None and spec.type in _CALLS_OUT:
        return TracedReranker(reranker, wiring.steps)
    return reranker


# The reranker types whose ``rerank`` is a network call (the others are arithmetic).
_CALLS_OUT = frozenset({"judge", "reward"})


class TracedReranker:
    """A reranker whose every call is a child span ``rerank <type>`` (candidates, outcome)."""

    def __init__(self, inner: Reranker, steps: Steps) -> None:
        self._inner = inner
        self._steps = steps
        self.name = inner.name

    async def rerank(self, messages: Messages, candidates: Sequence[str]) -> RerankResult:
        """The inner reranker's verdict, inside its span."""
        attributes = {"adaptive.reranker": self.name, "adaptive.candidates": len(candidates)}
        with self._steps.step(f"rerank {self.name}", attributes) as span:
            result = await self._inner.rerank(messages, candidates)
            span.set_attribute("adaptive.rerank_failed", result.failed)
            span.set_attribute("adaptive.cost_usd", result.cost_usd)
            return result
