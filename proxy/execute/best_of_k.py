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
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from proxy.execute.rerank import Reranker, RerankResult
from proxy.execute.reranker_registry import RerankerWiring, build_reranker
from proxy.execute.seam import EventStream, Execution, ExecutionRequest, JsonResult, Outcome
from proxy.policies.base import BasePolicy, SamplingPlan
from proxy.policies.decision import Decision
from proxy.policies.spec import RerankerConfig
from proxy.upstream.client import UpstreamClient
from proxy.upstream.pricing import CostModel, usage_of
from proxy.wire.errors import ProxyError, UpstreamError
from proxy.wire.protocol import client_choices, sse_event

log = logging.getLogger("adaptive_proxy.bestofk")

_STREAM_PIECE_CHARS = 48

# Records a call's tokens and cost; returns its cost in USD (``RouteExecutor.account``).
Account = Callable[[str, int, int, int], float]


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


def message_content(choice: dict[str, Any]) -> str:
    """The text of a completion choice (``""`` when it has none, e.g. only tool calls)."""
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


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
    ) -> None:
        self._upstreams = upstreams
        self._metrics = metrics
        self._account = account
        self._reranker_wiring = RerankerWiring(upstreams, session, costs, env)

    def build_reranker(self, spec: RerankerConfig) -> Reranker:
        """A reranker for ``spec``, wired to the upstream client and the shared session."""
        return build_reranker(spec, self._reranker_wiring)

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
        body = _sample_body(plan, data)
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
        reranker = self.build_reranker(plan.reranker)
        candidates = [message_content(c) for c in samples.choices]
        ranking = await reranker.rerank(data["messages"], candidates)
        if ranking.failed:
            self._metrics.rerank_failure(ranking.reranker)
            log.warning(
                "reranker %s failed (%s); the first sample wins", ranking.reranker, ranking.detail
            )
        self._metrics.observe_samples(decision.policy, len(candidates))
        return completion_body(decision, data, samples, ranking, candidates), samples, ranking

    async def execute(self, job: ExecutionRequest[BasePolicy | None]) -> Execution:
        """Answer a best-of-k request: the completed JSON, or the winner as SSE chunks."""
        decision, data = job.decision, job.body
        plan = job.policy.sampling_plan(decision) if job.policy is not None else SamplingPlan()
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


def assembled_stream(
    job: ExecutionRequest[BasePolicy | None],
    work: asyncio.Future[tuple[dict[str, Any], int]],
    *,
    headers: dict[str, str],
    source: str,
) -> EventStream:
    """A completion the proxy assembles (``work`` gives it and the samples drawn) as SSE
    chunks: the SSE writer sends keep-alives while ``work`` runs, then the chunks follow."""
    outcome = Outcome()

    async def events() -> AsyncGenerator[bytes, None]:
        try:
            body, n_samples = await work
            outcome.take(Outcome.of_completion(body, n_samples))
            for chunk in completion_chunks(body, job.include_usage):
                yield sse_event(chunk)
        finally:
            work.cancel()  # a no-op once it finished

    def adaptive() -> dict[str, Any]:
        adaptive_object: dict[str, Any] = work.result()[0]["adaptive"]
        return adaptive_object

    return EventStream(
        events=events(),
        adaptive=adaptive,
        headers=headers,
        outcome=outcome,
        warmup=work,
        keepalive_interval_s=job.keepalive_interval_s,
        source=source,
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


def completion_chunks(body: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A complete chat completion re-cut as ``chat.completion.chunk`` objects (usage last)."""
    base = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
    }
    out: list[dict[str, Any]] = []
    for choice in body["choices"]:
        message = choice.get("message") or {}
        index = choice["index"]
        first: dict[str, Any] = {"role": "assistant", "content": ""}
        if message.get("tool_calls"):
            first["tool_calls"] = [
                dict(call, index=i) for i, call in enumerate(message["tool_calls"])
            ]
        out.append({**base, "choices": [{"index": index, "delta": first, "finish_reason": None}]})
        text = message_content(choice)
        for start in range(0, len(text), _STREAM_PIECE_CHARS):
            piece = text[start : start + _STREAM_PIECE_CHARS]
            out.append(
                {
                    **base,
                    "choices": [
                        {"index": index, "delta": {"content": piece}, "finish_reason": None}
                    ],
                }
            )
        out.append(
            {
                **base,
                "choices": [
                    {
                        "index": index,
                        "delta": {},
                        "finish_reason": choice.get("finish_reason", "stop"),
                    }
                ],
            }
        )
    if include_usage:
        out.append({**base, "choices": [], "usage": body["usage"]})
    return out
