"""Executing sequential best-of-k: rounds of samples until a stop rule settles the answer.

Each round's samples come from the best-of-k executor's sampler (upstream ``n`` or parallel
calls); :func:`proxy.execute.sequential_rounds.run_rounds` decides after every round. The winner is
the sample
the verifier accepted, else the configured reranker's pick over every sample drawn (a ``reward``
reranker's round scores are reused: no second call; after a verifier failure, ``vote``).
``usage`` and cost sum every round and every verifier call.

Streaming: the rounds are the stream's warm-up (keep-alive comments throughout), then the winner
is sent as chunks, as for best-of-k.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from proxy.execute.best_of_k import (
    BestOfKExecutor,
    Samples,
    assembled_stream,
    check_enough,
    completion_body,
    message_content,
)
from proxy.execute.candidates import parseable_first, structured_candidates, structured_kind
from proxy.execute.rerank import RerankResult
from proxy.execute.rerank_text import extract_answer
from proxy.execute.seam import EventStream, Execution, ExecutionRequest, JsonResult, Outcome
from proxy.execute.sequential_rounds import RoundsResult, run_rounds
from proxy.learn.records import SampleOutcome, SequentialEvidence
from proxy.observe.tracing import NO_STEPS, Steps
from proxy.policies.base import SamplingPlan
from proxy.policies.best_of_k import BestOfKPolicy, SequentialPlan
from proxy.policies.decision import Decision
from proxy.policies.spec import RerankerConfig
from proxy.policies.stopping import VerifierStop
from proxy.wire.protocol import client_choices


class SequentialMetrics(Protocol):
    """What sequential sampling reports (implemented by :class:`proxy.observe.metrics.Metrics`)."""

    def rerank_failure(self, reranker: str) -> None: ...
    def observe_samples(self, policy: str, n: int) -> None: ...
    def observe_rounds(self, policy: str, rounds: int, stopped_by: str) -> None: ...
    def verifier_failure(self, policy: str) -> None: ...


def _merge(total: Samples, got: Samples) -> None:
    total.choices.extend(got.choices)
    total.template = total.template or got.template
    total.prompt_tokens += got.prompt_tokens
    total.completion_tokens += got.completion_tokens
    total.cost_usd += got.cost_usd
    total.failures.extend(got.failures)
    total.errors.extend(got.errors)


def _accepted_ranking(result: RoundsResult) -> RerankResult:
    """The verifier's verdict: the accepted sample first, the others by score."""
    assert result.accepted is not None
    scores = tuple(result.scores)

    def key(i: int) -> tuple[float, int]:
        score = scores[i]
        return (-score if score is not None else float("inf"), i)

    rest = sorted((i for i in range(len(scores)) if i != result.accepted), key=key)
    return RerankResult((result.accepted, *rest), scores, "verifier", 0.0)


def sequential_evidence(
    result: RoundsResult, ranking: RerankResult, stop: object
) -> SequentialEvidence:
    """What the rounds showed: every sample's answer and verdict, the rounds, why they stopped,
    and the answer returned (the outcome log's evidence; free labels are read from it)."""
    accept = stop.accept_score if isinstance(stop, VerifierStop) else None
    samples = [
        SampleOutcome(
            index=i,
            answer=answer,
            verdict=score,
            accepted=None if accept is None or score is None else score >= accept,
        )
        for i, (answer, score) in enumerate(zip(result.answers, result.scores, strict=True))
    ]
    winner = ranking.order[0] if ranking.order else None
    settled = (
        result.answers[winner] if winner is not None and winner < len(result.answers) else None
    )
    return SequentialEvidence(
        samples=samples, rounds=result.rounds, stopped_by=result.stopped_by, settled_answer=settled
    )


def _scored_ranking(result: RoundsResult) -> RerankResult | None:
    """Every sample's verifier score, best first; ``None`` when some sample has none."""
    if not result.scores or any(s is None for s in result.scores):
        return None
    scores = tuple(result.scores)
    order = sorted(range(len(scores)), key=lambda i: (-(scores[i] or 0.0), i))
    return RerankResult(tuple(order), scores, "reward", 0.0)


class SequentialExecutor:
    """Runs decisions of ``best_of_k`` policies with a ``sequential:`` section."""

    def __init__(
        self, sampler: BestOfKExecutor, metrics: SequentialMetrics, *, steps: Steps = NO_STEPS
    ) -> None:
        self._sampler = sampler
        self._metrics = metrics
        self._steps = steps

    async def run(
        self,
        decision: Decision,
        plan: SamplingPlan,
        rounds_plan: SequentialPlan,
        data: dict[str, Any],
    ) -> tuple[dict[str, Any], RoundsResult, SequentialEvidence]:
        """Draw rounds, pick the winner, build the completion (and what the rounds showed)."""
        messages = data["messages"]
        total = Samples()
        pattern = plan.reranker.pattern
        kind = structured_kind(data)
        # Structured answers: every drawn text's canonical answer (``None``: does not parse).
        structured_answers: dict[str, str | None] = {}
        parses: list[bool] = []
        verifier = None
        if isinstance(rounds_plan.stop, VerifierStop):
            verifier = self._sampler.build_reranker(plan.reranker)

        requested = 0

        async def draw(n: int) -> list[str | None]:
            nonlocal requested
            offset, requested = requested, requested + n
            got = await self._sampler.draw_samples(
                replace(decision, n=n), plan, data, seed_offset=offset
            )
            _merge(total, got)
            texts: list[str | None]
            if kind is None:
                texts = [message_content(c) for c in got.choices]
            else:
                drawn = structured_candidates(got.choices, kind)
                for text, ok in zip(drawn.texts, drawn.parses, strict=True):
                    structured_answers[text] = text if ok else None
                parses.extend(drawn.parses)
                texts = list(drawn.texts)
            return texts + [None] * max(0, n - len(texts))

        def extract(text: str) -> str | None:
            if kind is None:
                return extract_answer(text, pattern)
            return structured_answers.get(text)

        async def score(texts: Sequence[str]) -> RerankResult:
            assert verifier is not None
            return await verifier.rerank(messages, texts)

        result = await run_rounds(
            first_n=rounds_plan.first_n,
            step_n=rounds_plan.step_n,
            cap=rounds_plan.cap,
            n_max=rounds_plan.n_max,
            stop=rounds_plan.stop,
            draw=draw,
            extract=extract,
            score=score if verifier is not None else None,
            steps=self._steps,
            span_attributes={"adaptive.policy": decision.policy, "adaptive.arm": decision.arm},
        )
        check_enough(total, result.attempted, client_choices(data), decision.upstream)
        for _ in range(result.verifier_failures):
            self._metrics.rerank_failure("reward")
            self._metrics.verifier_failure(decision.policy)
        ranking = await self._final_ranking(result, plan.reranker, messages, kind is not None)
        if kind is not None:
            ranking = parseable_first(ranking, parses)
        scoring_cost = sum(r.cost_usd for r in result.scoring)
        body = completion_body(decision, data, total, ranking, result.texts)
        adaptive = body["adaptive"]
        adaptive.update(
            {
                "rounds": result.rounds,
                "samples_drawn": result.samples_drawn,
                "samples_failed": result.samples_failed,
                "stopped_by": result.stopped_by,
                "verifier_failures": result.verifier_failures,
                "cap": rounds_plan.cap,
                "cost_usd": adaptive["cost_usd"] + scoring_cost,
                "candidates": [
                    dict(c, answer=result.answers[i], verifier_score=result.scores[i])
                    for i, c in enumerate(adaptive["candidates"])
                ],
            }
        )
        if kind is not None:
            adaptive["candidates_kind"] = kind
            adaptive["candidates_unparseable"] = parses.count(False)
        self._metrics.observe_rounds(decision.policy, result.rounds, result.stopped_by)
        self._metrics.observe_samples(decision.policy, result.samples_drawn)
        return body, result, sequential_evidence(result, ranking, rounds_plan.stop)

    async def _final_ranking(
        self,
        result: RoundsResult,
        spec: RerankerConfig,
        messages: list[dict[str, Any]],
        structured: bool,
    ) -> RerankResult:
        if result.accepted is not None:
            return _accepted_ranking(result)
        if spec.type == "reward" and result.verifier_failures == 0:
            reused = _scored_ranking(result)
            if reused is not None:
                return reused
        if result.verifier_failures:
            spec = RerankerConfig(type="vote", pattern=spec.pattern)  # the reranker of last resort
        start = time.perf_counter()
        reranker = self._sampler.build_reranker(spec, structured=structured)
        ranking = await reranker.rerank(messages, result.texts)
        if ranking.failed:
            self._metrics.rerank_failure(ranking.reranker)
        return replace(ranking, latency_ms=(time.perf_counter() - start) * 1000)

    async def execute(self, job: ExecutionRequest[BestOfKPolicy]) -> Execution:
        """The completed JSON (``x-adaptive-n`` = samples drawn), or the winner as SSE chunks."""
        policy, decision, data = job.policy, job.decision, job.body
        if policy.sequential is None:
            raise TypeError("the sequential executor runs best_of_k policies with `sequential:`")
        plan = policy.sampling_plan(decision)
        if self._sampler.unrankable(job, plan.reranker):
            return await self._sampler.route_instead(job)
        rounds_plan = policy.sequential_plan(decision)
        if not job.stream:
            body, result, evidence = await self.run(decision, plan, rounds_plan, data)
            outcome = Outcome.of_completion(body, result.samples_drawn)
            outcome.evidence = evidence
            return JsonResult(
                body,
                {
                    **decision.headers(),
                    "x-adaptive-n": str(result.samples_drawn),
                    "x-adaptive-choices": str(len(body["choices"])),
                },
                outcome,
            )
        streamed: list[EventStream] = []

        async def body_and_samples() -> tuple[dict[str, Any], int]:
            body, result, evidence = await self.run(decision, plan, rounds_plan, data)
            streamed[0].outcome.evidence = evidence
            return body, result.samples_drawn

        stream = assembled_stream(
            job,
            asyncio.ensure_future(body_and_samples()),
            # Sent before round one: the body's adaptive object has the samples drawn.
            headers={**decision.headers(), "x-adaptive-choices": str(client_choices(data))},
            source=f"sequential best-of-k from {decision.upstream}",
        )
        streamed.append(stream)
        return stream
