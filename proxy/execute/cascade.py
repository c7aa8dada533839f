"""Executing a cascade: cheap stages buffered, evidence assessed, the answering stage streamed.

The cheap stages run concurrently and are never streamed: their answers are evidence first.
Then either a cheap sample answers (returned whole, or re-cut as SSE chunks), or the last stage
runs: as a plain call, or as its upstream's own stream passed through (the answering stage
streams). The stages run before the response starts, so ``x-adaptive-arm`` can name the stage
that answers even on a stream. ``usage`` and cost sum every stage; ``adaptive.stages`` lists each
stage's answers and cost.

Failures: a failed cheap sample is no evidence, and every cheap sample failing escalates; a last
stage that fails falls back to the cheap answer when there is one, else its error is the
request's. A client disconnect cancels the calls in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from predictor_onnx.evidence import SampleEvidence
from proxy.execute.best_of_k import completion_chunks, message_content
from proxy.execute.cascade_events import first_choice_delta, with_cheap_usage
from proxy.execute.cascade_stages import (
    CheapResult,
    StageRun,
    cascade_evidence,
    first_choice,
    mean_logprob,
)
from proxy.execute.rerank_text import extract_answer
from proxy.execute.route import RouteExecutor
from proxy.execute.seam import EventStream, Execution, ExecutionRequest, JsonResult, Outcome
from proxy.observe.tracing import NO_STEPS, Steps, StepSpan
from proxy.policies.cascade import CascadePolicy, CascadeStage
from proxy.policies.decision import Decision
from proxy.policies.escalation import assess
from proxy.policies.overrides import apply_overrides
from proxy.upstream.client import UpstreamClient
from proxy.upstream.pricing import CostModel, usage_of
from proxy.wire.errors import ProxyError
from proxy.wire.protocol import sse_event
from proxy.wire.tokens import count_message_tokens_async

log = logging.getLogger("adaptive_proxy.cascade")


class CascadeMetrics(Protocol):
    """What cascades report (implemented by :class:`proxy.observe.metrics.Metrics`)."""

    def observe_cascade(self, policy: str, answered_by: str, escalated: bool) -> None: ...
    def cascade_stage_failure(self, policy: str, stage: str) -> None: ...
    def observe_cascade_agreement(self, policy: str, agreed: bool) -> None: ...


class CascadeExecutor:
    """Runs the decisions of ``cascade`` policies."""

    def __init__(
        self,
        upstreams: UpstreamClient,
        route: RouteExecutor,
        costs: CostModel,
        metrics: CascadeMetrics,
        *,
        steps: Steps = NO_STEPS,
    ) -> None:
        self._upstreams = upstreams
        self._route = route
        self._costs = costs
        self._metrics = metrics
        self._steps = steps

    def _stage_span(
        self, policy: str, stage: CascadeStage, index: int
    ) -> AbstractContextManager[StepSpan]:
        attributes = {
            "adaptive.policy": policy,
            "adaptive.arm": stage.label,
            "adaptive.stage": stage.label,
            "adaptive.stage_index": index,
            "adaptive.upstream": stage.upstream,
            "adaptive.n": stage.n,
        }
        return self._steps.step(f"cascade stage {stage.label}", attributes)

    async def _run_stage(
        self,
        policy: str,
        stage: CascadeStage,
        index: int,
        body: dict[str, Any],
        *,
        override_client: bool,
    ) -> StageRun:
        with self._stage_span(policy, stage, index) as span:
            run = await self._call_stage(policy, stage, body, override_client=override_client)
            span.set_attribute("adaptive.failed", len(run.errors))
            span.set_attribute("adaptive.cost_usd", run.cost_usd)
            return run

    async def _call_stage(
        self, policy: str, stage: CascadeStage, body: dict[str, Any], *, override_client: bool
    ) -> StageRun:
        run = StageRun(stage)
        request = {**body, "logprobs": True} if stage.logprobs else body
        overrides = stage.body_overrides()
        request = apply_overrides(request, overrides, override_client=override_client)
        results = await asyncio.gather(
            *(self._upstreams.chat(stage.upstream, request) for _ in range(stage.n)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, ProxyError):
                    raise result
                run.replies.append(None)
                run.errors.append(result.message)
                self._metrics.cascade_stage_failure(policy, stage.label)
                log.warning("cascade %s: stage %s failed: %s", policy, stage.label, result.message)
                continue
            reply = result.data
            prompt_tokens, completion_tokens = await usage_of(reply, body["messages"])
            run.prompt_tokens += prompt_tokens
            run.completion_tokens += completion_tokens
            run.cost_usd += self._route.account(
                stage.upstream, prompt_tokens, completion_tokens, overrides=overrides
            )
            run.replies.append(reply)
        return run

    async def run_cheap(
        self, decision: Decision, policy: CascadePolicy, data: dict[str, Any]
    ) -> CheapResult:
        """Run every cheap stage concurrently and assess their answers."""
        body = {k: v for k, v in data.items() if k not in ("stream", "stream_options")}
        runs = list(
            await asyncio.gather(
                *(
                    self._run_stage(
                        decision.policy, s, i, body, override_client=policy.override_client
                    )
                    for i, s in enumerate(policy.cheap_stages)
                )
            )
        )
        samples: list[SampleEvidence] = []
        replies: list[dict[str, Any] | None] = []
        for index, run in enumerate(runs):
            for reply in run.replies:
                choice = first_choice(reply)
                text = message_content(choice) if choice is not None else None
                answer = extract_answer(text, policy.answer_pattern) if text else None
                logprob = mean_logprob(choice) if choice is not None else None
                samples.append(SampleEvidence(index, text, answer, logprob))
                replies.append(reply)
        # λ: the YAML's, or (with a budget) the controller's at decision time.
        lam = policy.escalate.lambda_ if policy.escalate.budget is None else decision.lambda_
        tokens = await count_message_tokens_async(data["messages"])
        final = policy.stages[-1]
        delta_cost = self._costs.expected_cost_usd(
            final.upstream, tokens, overrides=final.body_overrides()
        )
        assessment = assess(
            samples,
            decision.predictions,
            policy.escalator,
            threshold=policy.escalate.effective_threshold(),
            lambda_=lam,
            delta_cost_usd=delta_cost,
        )
        return CheapResult(runs, replies, assessment, delta_cost)

    def _adaptive(
        self,
        decision: Decision,
        policy: CascadePolicy,
        cheap: CheapResult,
        answered_by: str,
        escalated: bool,
        last: Mapping[str, Any] | None,
        last_drawn: int,
        choices: int,
    ) -> dict[str, Any]:
        a = cheap.assessment
        stages: list[dict[str, Any]] = []
        for index, run in enumerate(cheap.runs):
            answers = [s.answer for s in a.samples if s.stage == index]
            stages.append(
                {
                    "stage": run.stage.label,
                    "upstream": run.stage.upstream,
                    "ran": True,
                    "answers": answers,
                    "failed": len(run.errors),
                    "cost_usd": run.cost_usd,
                }
            )
        final = policy.stages[-1]
        stages.append(
            {"stage": final.label, "upstream": final.upstream, "ran": escalated, **(last or {})}
        )
        out = decision.adaptive()
        out.update(
            {
                "arm": answered_by,
                "upstream": next(s.upstream for s in policy.stages if s.label == answered_by),
                # Samples drawn by every stage that ran, as best-of-k's ``n`` counts them.
                "n": cheap.drawn + last_drawn,
                "choices": choices,
                "stages": stages,
                "escalated": escalated,
                "escalation_reason": a.reason,
                "gain": a.gain,
                "answer": a.answer,
                "evidence": dict(a.features),
                "escalator": policy.escalator.kind,
            }
        )
        return out

    async def execute(self, job: ExecutionRequest[CascadePolicy]) -> Execution:
        """Cheap stages, then the cheap answer or the last stage (streamed when asked)."""
        policy, decision, data = job.policy, job.decision, job.body
        with self._steps.step("cascade", {"adaptive.policy": decision.policy}) as span:
            cheap = await self.run_cheap(decision, policy, data)
            if cheap.agreement is not None:
                self._metrics.observe_cascade_agreement(decision.policy, cheap.agreement)
            a = cheap.assessment
            span.set_attribute("adaptive.escalated", a.escalate)
            span.set_attribute("adaptive.escalation_reason", a.reason)
            if a.gain is not None:
                span.set_attribute("adaptive.gain", a.gain)
            result = await self._answer(decision, policy, cheap, job)
            if result.outcome.answered_by is not None:
                span.set_attribute("adaptive.arm", result.outcome.answered_by[0])
        if policy.escalate.budget is not None:
            result.outcome.problem = cheap.problem()
            result.outcome.arm_index = int(cheap.assessment.escalate)
        return result

    async def _answer(
        self,
        decision: Decision,
        policy: CascadePolicy,
        cheap: CheapResult,
        job: ExecutionRequest[CascadePolicy],
    ) -> Execution:
        data = job.body
        final = policy.stages[-1]
        if cheap.assessment.escalate:
            body = {k: v for k, v in data.items() if k not in ("stream", "stream_options")}
            escalated = Decision(
                policy=decision.policy,
                policy_version=decision.policy_version,
                arm=final.label,
                upstream=final.upstream,
                predictions=decision.predictions,
                overrides=final.body_overrides(),
                override_client=policy.override_client,
            )
            last_index = len(policy.stages) - 1
            try:
                # A streamed last stage's span covers opening its stream (then it passes through).
                with self._stage_span(decision.policy, final, last_index) as span:
                    span.set_attribute("adaptive.escalated", True)
                    if job.stream:
                        stream = await self._route.open_events(
                            escalated, {**body, "stream": True}, None, job.include_usage
                        )
                    else:
                        result = await self._route.respond_json(escalated, body, None)
            except ProxyError as error:
                if cheap.assessment.answered_by is None:
                    raise
                log.warning(
                    "cascade %s: last stage %s failed (%s); answering with the cheap answer",
                    decision.policy,
                    final.label,
                    error.message,
                )
                return self._cheap_answer(decision, policy, cheap, job, failed=error.message)
            if job.stream:
                return self._escalated_stream(decision, policy, cheap, stream, job)
            return self._escalated_json(decision, policy, cheap, result.body)
        return self._cheap_answer(decision, policy, cheap, job, failed=None)

    def _cheap_answer(
        self,
        decision: Decision,
        policy: CascadePolicy,
        cheap: CheapResult,
        job: ExecutionRequest[CascadePolicy],
        failed: str | None,
    ) -> Execution:
        index = cheap.assessment.answered_by
        assert index is not None
        reply = cheap.replies[index]
        assert reply is not None
        stage = policy.stages[cheap.assessment.samples[index].stage]
        prompt_tokens, completion_tokens = cheap.usage
        body = {k: v for k, v in reply.items() if k != "usage"}
        body["choices"] = [dict(first_choice(reply) or {}, index=0)]
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        last = {"error": failed} if failed is not None else None
        adaptive = self._adaptive(decision, policy, cheap, stage.label, False, last, 0, 1)
        adaptive["cost_usd"] = cheap.cost_usd
        if failed is not None:
            adaptive["escalation_failed"] = True
        body["adaptive"] = adaptive
        self._metrics.observe_cascade(decision.policy, stage.label, False)
        headers = _headers(decision, stage.label, adaptive)
        outcome = Outcome(
            cheap.cost_usd,
            cheap.drawn,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            answered_by=(stage.label, stage.upstream),
        )
        outcome.evidence = cascade_evidence(policy, cheap, escalated=False, last_answer=None)
        if not job.stream:
            return JsonResult(body, headers, outcome)

        async def events() -> AsyncGenerator[bytes, None]:
            for chunk in completion_chunks(body, job.include_usage):
                yield sse_event(chunk)

        return EventStream(
            events=events(),
            adaptive=lambda: adaptive,
            headers=headers,
            outcome=outcome,
            source=f"cascade {decision.policy} (stage {stage.label})",
        )

    def _escalated_json(
        self,
        decision: Decision,
        policy: CascadePolicy,
        cheap: CheapResult,
        body: dict[str, Any],
    ) -> JsonResult:
        final = policy.stages[-1]
        last_cost = float(body.get("adaptive", {}).get("cost_usd", 0.0))
        usage = body.get("usage") or {}
        prompt_tokens, completion_tokens = cheap.usage
        prompt_tokens += int(usage.get("prompt_tokens") or 0)
        completion_tokens += int(usage.get("completion_tokens") or 0)
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        choices = len(body.get("choices") or ()) or 1
        adaptive = self._adaptive(
            decision, policy, cheap, final.label, True, {"cost_usd": last_cost}, choices, choices
        )
        adaptive["cost_usd"] = cheap.cost_usd + last_cost
        body["adaptive"] = adaptive
        self._metrics.observe_cascade(decision.policy, final.label, True)
        headers = _headers(decision, final.label, adaptive)
        outcome = Outcome.of_completion(body, adaptive["n"])
        outcome.answered_by = (final.label, final.upstream)
        text = message_content(first_choice(body) or {})
        last_answer = extract_answer(text, policy.answer_pattern) if text else None
        outcome.evidence = cascade_evidence(policy, cheap, escalated=True, last_answer=last_answer)
        return JsonResult(body, headers, outcome)

    def _escalated_stream(
        self,
        decision: Decision,
        policy: CascadePolicy,
        cheap: CheapResult,
        stream: EventStream,
        job: ExecutionRequest[CascadePolicy],
    ) -> EventStream:
        final = policy.stages[-1]
        outcome = Outcome(cheap.cost_usd, cheap.drawn, answered_by=(final.label, final.upstream))
        outcome.evidence = cascade_evidence(policy, cheap, escalated=True, last_answer=None)
        # The last stage draws the client's n (counted when its stream opened).
        last_drawn = stream.outcome.n_samples
        cheap_prompt, cheap_completion = cheap.usage
        inner = stream.events
        # A learning policy's free label needs the last stage's answer: its first choice's text
        # is gathered as it passes, and only the answer extracted from it is kept.
        text: list[str] | None = [] if policy.learn else None

        async def events() -> AsyncGenerator[bytes, None]:
            try:
                async for event in inner:
                    if job.include_usage and b'"usage"' in event:
                        event = with_cheap_usage(event, cheap_prompt, cheap_completion)
                    if text is not None and b'"content"' in event:
                        text.extend(first_choice_delta(event))
                    yield event
            finally:
                await inner.aclose()
                outcome.cost_usd = cheap.cost_usd + stream.outcome.cost_usd
                outcome.n_samples += stream.outcome.n_samples
                if text:
                    answer = extract_answer("".join(text), policy.answer_pattern)
                    outcome.evidence = cascade_evidence(
                        policy, cheap, escalated=True, last_answer=answer
                    )

        def adaptive() -> dict[str, Any]:
            out = self._adaptive(
                decision, policy, cheap, final.label, True, None, last_drawn, last_drawn
            )
            out["cost_usd_cheap_stages"] = cheap.cost_usd
            return out

        self._metrics.observe_cascade(decision.policy, final.label, True)
        return EventStream(
            events=events(),
            adaptive=adaptive,
            headers=_headers(decision, final.label, adaptive()),
            outcome=outcome,
            source=stream.source,
        )


def _headers(decision: Decision, answered_by: str, adaptive: Mapping[str, Any]) -> dict[str, str]:
    """The response headers: the answering stage, samples drawn by every stage, the gain."""
    headers = {
        **decision.headers(),
        "x-adaptive-arm": answered_by,
        "x-adaptive-n": str(adaptive["n"]),
        "x-adaptive-choices": str(adaptive["choices"]),
    }
    if adaptive.get("gain") is not None:
        headers["x-adaptive-gain"] = f"{adaptive['gain']:.4f}"
    return headers
