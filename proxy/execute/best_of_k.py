"""Executing best-of-k: n samples concurrently, one reranker call, the winner as the answer.

Samples come from one upstream call with ``n`` where the upstream supports it, else from n
parallel calls; a failed sample is dropped and the request succeeds while one sample arrived.
``usage`` sums every sample and the reranker call.

Streaming: best-of-k cannot stream before the winner is chosen, so with ``stream: true`` the
execution is an :class:`~proxy.execute.seam.EventStream` whose ``warmup`` is the sampling (the SSE
writer sends ``: keep-alive`` comments meanwhile), then the winner as chunks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import aiohttp

from proxy.execute.assembled import assembled_stream, completion_chunks, message_content
from proxy.execute.candidates import (
    UNRANKABLE,
    can_rank,
    rerank_structured,
    structured_candidates,
    structured_kind,
)
from proxy.execute.rerank import Reranker, RerankResult
from proxy.execute.reranker_registry import RerankerWiring, build_reranker
from proxy.execute.seam import (
    Execution,
    ExecutionRequest,
    Executor,
    JsonResult,
    Outcome,
)
from proxy.observe.tracing import Steps
from proxy.policies.base import BasePolicy, SamplingPlan
from proxy.policies.decision import Decision
from proxy.policies.overrides import apply_overrides
from proxy.policies.spec import RerankerConfig
from proxy.upstream.client import UpstreamClient
from proxy.upstream.pricing import CostModel, usage_of
from proxy.wire.errors import ProxyError, UpstreamError
from proxy.wire.protocol import client_choices

log = logging.getLogger("adaptive_proxy.bestofk")

# Re-exported: what the other executors assemble replies with.
__all__ = [
    "BestOfKExecutor",
    "Samples",
    "assembled_stream",
    "check_enough",
    "completion_body",
    "completion_chunks",
    "message_content",
]


class Account(Protocol):
    """Records a call's tokens and cost; returns its cost in USD (``RouteExecutor.account``)."""

    def __call__(
        self,
        upstream: str,
        prompt_tokens: int,
        completion_tokens: int,
        n: int = 1,
        *,
        overrides: Mapping[str, Any] | None = None,
    ) -> float: ...


class SamplingMetrics(Protocol):
    """The metrics best-of-k reports (implemented by :class:`proxy.observe.metrics.Metrics`)."""

    def rerank_failure(self, reranker: str) -> None: ...
    def observe_samples(self, policy: str, n: int) -> None: ...


@dataclass
class Samples:
    """What sampling produced: the completions' choices and the summed usage and cost."""

    choices: list[dict[str, Any]] = field(default_factory=list)
    template: dict[str, Any] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    failures: list[str] = field(default_factory=list)
    errors: list[ProxyError] = field(default_factory=list)


def _sample_body(plan: SamplingPlan, data: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in data.items() if k not in ("stream", "stream_options", "n")}
    for key, value in plan.sampling.items():
        if body.get(key) is None:  # the client's own sampling parameters win; null sets none
            body[key] = value
    return body


def _reseeded(body: dict[str, Any], offset: int) -> dict[str, Any]:
    """``body`` with its integer ``seed`` moved on by ``offset`` (unchanged without a seed).

    A seeded upstream answers the same seed with the same sample, so every separate call of one
    request (parallel calls, later sequential rounds) needs its own seed, or they all draw the
    first call's samples again; ``seed + offset`` keeps the whole request reproducible.
    """
    seed = body.get("seed")
    if offset == 0 or not isinstance(seed, int) or isinstance(seed, bool):
        return body
    return {**body, "seed": seed + offset}


def check_enough(samples: Samples, requested: int, wanted: int, upstream: str) -> None:
    """Raise unless at least ``wanted`` (the client's ``n``) of ``requested`` samples arrived.

    Each choice is a distinct sample and OpenAI never answers fewer choices than ``n``, so too
    few samples fail the request rather than shrink the answer. The upstream refusing the
    request itself (4xx, 429) is the client's to see and fix (or back off from); only
    server-side failures become a 502.
    """
    arrived = len(samples.choices)
    if arrived >= max(wanted, 1):
        return
    rejected = next((e for e in samples.errors if e.status < 500), None)
    if rejected is not None:
        raise rejected
    detail = samples.failures[0] if samples.failures else "no choices returned"
    if arrived == 0:
        raise UpstreamError(f"all {requested} samples failed: {detail}", upstream=upstream)
    raise UpstreamError(
        f"only {arrived} of {requested} samples arrived, fewer than the {wanted} choices "
        f"asked for (n): {detail}",
        upstream=upstream,
    )


class BestOfKExecutor:
    """Runs multi-sample decisions: sample, rerank, answer with the winner."""

    def __init__(
        self,
        upstreams: UpstreamClient,
        session: aiohttp.ClientSession,
        costs: CostModel,
        metrics: SamplingMetrics,
        account: Account,
        env: Mapping[str, str],
        *,
        route: Executor | None = None,
        steps: Steps | None = None,
    ) -> None:
        self._upstreams = upstreams
        # Where a request goes whose candidates the reranker cannot compare (one call).
        self._route = route
        self._metrics = metrics
        self._account = account
        self._reranker_wiring = RerankerWiring(upstreams, session, costs, env, steps)

    def build_reranker(self, spec: RerankerConfig, *, structured: bool = False) -> Reranker:
        """A reranker for ``spec``, wired to the upstream client and the shared session;
        ``structured``: the candidates are canonical tool calls or JSON."""
        return build_reranker(spec, self._reranker_wiring, structured=structured)

    async def draw_samples(
        self,
        decision: Decision,
        plan: SamplingPlan,
        data: dict[str, Any],
        *,
        seed_offset: int = 0,
    ) -> Samples:
        """n samples from the decided upstream; failed samples are dropped.

        A client ``seed`` is moved on by ``seed_offset`` (the samples an earlier round already
        drew) and by each parallel call's index, so no two calls repeat one another's samples.
        """
        upstreams, account = self._upstreams, self._account
        overrides = decision.overrides
        body = apply_overrides(
            _sample_body(plan, data), overrides, override_client=decision.override_client
        )
        messages = data["messages"]
        samples = Samples()

        async def collect(requests: list[dict[str, Any]]) -> None:
            results = await asyncio.gather(
                *(upstreams.chat(decision.upstream, r) for r in requests), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    if not isinstance(result, ProxyError):
                        raise result
                    samples.failures.append(result.message)
                    samples.errors.append(result)
                    continue
                reply = result.data
                samples.template = samples.template or reply
                prompt_tokens, completion_tokens = await usage_of(reply, messages)
                samples.prompt_tokens += prompt_tokens
                samples.completion_tokens += completion_tokens
                samples.cost_usd += account(
                    decision.upstream,
                    prompt_tokens,
                    completion_tokens,
                    max(len(reply.get("choices") or []), 1),
                    overrides=overrides,
                )
                samples.choices.extend(c for c in reply.get("choices") or [] if isinstance(c, dict))

        use_n = plan.use_upstream_n
        if use_n is None:
            use_n = upstreams.config(decision.upstream).supports_n
        if use_n and decision.n > 1:
            await collect([{**_reseeded(body, seed_offset), "n": decision.n}])
            missing = decision.n - len(samples.choices)
            if samples.choices and missing > 0:
                # Some OpenAI-compatible servers (Ollama, llama.cpp) ignore `n` and answer one
                # choice; draw the rest in parallel rather than silently deciding on fewer.
                log.debug(
                    "upstream %s returned %d of %d choices; drawing the rest",
                    decision.upstream,
                    len(samples.choices),
                    decision.n,
                )
                start = seed_offset + len(samples.choices)
                await collect([_reseeded(body, start + i) for i in range(missing)])
        else:
            await collect([_reseeded(body, seed_offset + i) for i in range(decision.n)])
        return samples

    async def run(
        self, decision: Decision, plan: SamplingPlan, data: dict[str, Any]
    ) -> tuple[dict[str, Any], Samples, RerankResult]:
        """Sample, rerank, and build the completion (choices ordered best first)."""
        samples = await self.draw_samples(decision, plan, data)
        check_enough(samples, decision.n, client_choices(data), decision.upstream)
        kind = structured_kind(data)
        reranker = self.build_reranker(plan.reranker, structured=kind is not None)
        unparseable = 0
        if kind is None:
            candidates = [message_content(c) for c in samples.choices]
            ranking = await reranker.rerank(data["messages"], candidates)
        else:
            structured = structured_candidates(samples.choices, kind)
            candidates, unparseable = structured.texts, structured.unparseable
            ranking = await rerank_structured(reranker, data["messages"], structured)
        if ranking.failed:
            self._metrics.rerank_failure(ranking.reranker)
            log.warning(
                "reranker %s failed (%s); the first sample wins", ranking.reranker, ranking.detail
            )
        self._metrics.observe_samples(decision.policy, len(candidates))
        body = completion_body(decision, data, samples, ranking, candidates)
        if kind is not None:
            body["adaptive"]["candidates_kind"] = kind
            body["adaptive"]["candidates_unparseable"] = unparseable
        return body, samples, ranking

    def unrankable(self, job: ExecutionRequest[BasePolicy | None], spec: RerankerConfig) -> bool:
        """Whether ``spec`` cannot compare this request's candidates (and a route can run it)."""
        return self._route is not None and not can_rank(spec, structured_kind(job.body))

    async def route_instead(self, job: ExecutionRequest[BasePolicy | None]) -> Execution:
        """One call to the decided upstream, for candidates the reranker cannot compare."""
        assert self._route is not None
        decision = job.decision
        cost = decision.expected_cost_usd
        routed = replace(
            decision,
            n=1,
            reranker=None,
            fallback_reason=UNRANKABLE,
            expected_cost_usd=None if cost is None else cost / max(decision.n, 1),
        )
        return await self._route.execute(replace(job, decision=routed))

    async def execute(self, job: ExecutionRequest[BasePolicy | None]) -> Execution:
        """Answer a best-of-k request: the completed JSON, or the winner as SSE chunks."""
        decision, data = job.decision, job.body
        plan = job.policy.sampling_plan(decision) if job.policy is not None else SamplingPlan()
        if self.unrankable(job, plan.reranker):
            return await self.route_instead(job)
        if not job.stream:
            body, samples, _ = await self.run(decision, plan, data)
            return JsonResult(
                body,
                {
                    **decision.headers(),
                    "x-adaptive-n": str(body["adaptive"]["n"]),
                    "x-adaptive-choices": str(body["adaptive"]["choices"]),
                },
                Outcome.of_completion(body, len(samples.choices)),
            )

        async def body_and_samples() -> tuple[dict[str, Any], int]:
            body, samples, _ = await self.run(decision, plan, data)
            return body, len(samples.choices)

        return assembled_stream(
            job,
            asyncio.ensure_future(body_and_samples()),
            # Sent before sampling ends: n is the samples requested; the body has those drawn.
            # Exactly the client's n choices follow (too few samples end in an error event).
            headers={**decision.headers(), "x-adaptive-choices": str(client_choices(data))},
            source=f"best-of-{decision.n} from {decision.upstream}",
        )


def completion_body(
    decision: Decision,
    data: dict[str, Any],
    samples: Samples,
    ranking: RerankResult,
    candidates: list[str],
) -> dict[str, Any]:
    """The chat completion of a multi-sample request: the ranked choices, summed usage, and
    the ``adaptive`` object with every candidate's score and the winner."""
    wanted = client_choices(data)
    chosen = [dict(samples.choices[i], index=rank) for rank, i in enumerate(ranking.order[:wanted])]
    usage_extra = ranking.usage or {}
    prompt_tokens = samples.prompt_tokens + int(usage_extra.get("prompt_tokens", 0))
    completion_tokens = samples.completion_tokens + int(usage_extra.get("completion_tokens", 0))
    template = samples.template or {}
    body = {
        "id": template.get("id", "chatcmpl-best-of-k"),
        "object": "chat.completion",
        "created": template.get("created", int(time.time())),
        "model": template.get("model", ""),
        "choices": chosen,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if "system_fingerprint" in template:
        body["system_fingerprint"] = template["system_fingerprint"]
    adaptive = decision.adaptive()
    adaptive.update(
        {
            "n": len(candidates),
            "n_requested": decision.n,
            "choices": len(chosen),
            "samples_failed": len(samples.failures),
            "reranker": ranking.reranker,
            "rerank_latency_ms": round(ranking.latency_ms, 3),
            "rerank_failed": ranking.failed,
            "candidates": [
                {"index": i, "score": ranking.scores[i] if i < len(ranking.scores) else None}
                for i in range(len(candidates))
            ],
            "winner": ranking.best,
            "cost_usd": samples.cost_usd + ranking.cost_usd,
        }
    )
    body["adaptive"] = adaptive
    return body
