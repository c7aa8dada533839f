"""Executing best-of-k: n samples concurrently, one reranker call, the winner as the answer.

Samples come from one upstream call with ``n`` where the upstream supports it, else from n
parallel calls; a failed sample is dropped and the request succeeds while one sample arrived.
``usage`` sums every sample and the reranker call.

Streaming: best-of-k cannot stream before the winner is chosen, so with ``stream: true`` the
proxy opens the SSE response at once, sends ``: keep-alive`` comments while sampling (clients and
load balancers do not time out), then streams the winner as chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from proxy.errors import ProxyError, UpstreamError
from proxy.middleware import STREAM_STARTED
from proxy.policies.base import Decision
from proxy.policies.policy import SamplingPlan
from proxy.policies.spec import RerankerConfig
from proxy.pricing import usage_of
from proxy.protocol import SSE_DONE, SSE_KEEPALIVE, ChatCompletionRequest, sse_event
from proxy.rerank import (
    FirstReranker,
    JudgeReranker,
    Reranker,
    RerankResult,
    RewardReranker,
    VoteReranker,
)
from proxy.state import ProxyState

log = logging.getLogger("adaptive_proxy.bestofk")

_STREAM_PIECE_CHARS = 48


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


def sampling_plan(state: ProxyState, decision: Decision) -> SamplingPlan:
    """How the decision's policy draws and reranks its samples."""
    policy = state.snapshot.config.policies.get(decision.policy)
    return policy.sampling_plan(decision) if policy is not None else SamplingPlan()


def build_reranker(state: ProxyState, spec: RerankerConfig) -> Reranker:
    """A reranker for ``spec``, wired to the proxy's upstream client and session."""
    assert state.upstreams is not None
    upstreams = state.upstreams
    if spec.type == "first":
        return FirstReranker()
    if spec.type == "vote":
        return VoteReranker(spec.pattern)
    if spec.type == "judge":
        assert spec.upstream is not None
        judge = spec.upstream

        async def chat(name: str, body: dict[str, Any]) -> dict[str, Any]:
            return (await upstreams.chat(name, body)).data

        def cost(usage: dict[str, int]) -> float:
            return state.costs.prices(judge).cost_usd(
                int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
            )

        return JudgeReranker(
            chat,
            judge,
            template=spec.template,
            cost_fn=cost,
            structured_output=spec.structured_output,
        )
    assert spec.url is not None
    headers = {}
    if spec.api_key_env and state.env.get(spec.api_key_env):
        headers["Authorization"] = f"Bearer {state.env[spec.api_key_env]}"
    return RewardReranker(
        upstreams.session,
        spec.url,
        request_format=spec.request_format,
        model=spec.model,
        scores_path=spec.scores_path,
        headers=headers,
        timeout_s=spec.timeout_s,
    )


def _sample_body(plan: SamplingPlan, data: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in data.items() if k not in ("stream", "stream_options", "n")}
    for key, value in plan.sampling.items():
        body.setdefault(key, value)  # the client's own sampling parameters win
    return body


async def draw_samples(state: ProxyState, decision: Decision, data: dict[str, Any]) -> Samples:
    """n samples from the decided upstream; failed samples are dropped."""
    assert state.upstreams is not None and state.executor is not None
    upstreams, executor = state.upstreams, state.executor
    plan = sampling_plan(state, decision)
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
            prompt_tokens, completion_tokens = usage_of(reply, messages)
            samples.prompt_tokens += prompt_tokens
            samples.completion_tokens += completion_tokens
            samples.cost_usd += executor.account(
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
        await collect([{**body, "n": decision.n}])
        missing = decision.n - len(samples.choices)
        if samples.choices and missing > 0:
            # Some OpenAI-compatible servers (Ollama, llama.cpp) ignore `n` and answer one
            # choice; draw the rest in parallel rather than silently deciding on fewer samples.
            log.debug(
                "upstream %s returned %d of %d choices; drawing the rest",
                decision.upstream,
                len(samples.choices),
                decision.n,
            )
            await collect([body] * missing)
    else:
        await collect([body] * decision.n)
    return samples


def _content(choice: dict[str, Any]) -> str:
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


async def run_best_of_k(
    state: ProxyState, decision: Decision, data: dict[str, Any]
) -> tuple[dict[str, Any], Samples, RerankResult]:
    """Sample, rerank, and build the completion (choices ordered best first)."""
    samples = await draw_samples(state, decision, data)
    if not samples.choices:
        # The upstream refusing the request itself (4xx, 429) is the client's to see and fix
        # (or back off from); only server-side failures become "all samples failed" (502).
        rejected = next((e for e in samples.errors if e.status < 500), None)
        if rejected is not None:
            raise rejected
        detail = samples.failures[0] if samples.failures else "no choices returned"
        raise UpstreamError(
            f"all {decision.n} samples failed: {detail}", upstream=decision.upstream
        )
    reranker = build_reranker(state, sampling_plan(state, decision).reranker)
    candidates = [_content(c) for c in samples.choices]
    ranking = await reranker.rerank(data["messages"], candidates)
    if ranking.failed:
        state.metrics.rerank_failure(ranking.reranker)
        log.warning(
            "reranker %s failed (%s); the first sample wins", ranking.reranker, ranking.detail
        )
    state.metrics.observe_samples(decision.policy, len(candidates))
    wanted = int(data.get("n") or 1)
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
    return body, samples, ranking


def _chunks(body: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
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
        text = _content(choice)
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
    if out:
        out[0]["adaptive"] = body["adaptive"]
    if include_usage:
        out.append({**base, "choices": [], "usage": body["usage"]})
    return out


async def respond(
    request: web.Request,
    state: ProxyState,
    decision: Decision,
    data: dict[str, Any],
    parsed: ChatCompletionRequest,
) -> tuple[web.StreamResponse, float, int]:
    """Answer a best-of-k request (JSON or SSE); returns (response, cost_usd, samples drawn)."""
    if not parsed.stream:
        body, samples, _ = await run_best_of_k(state, decision, data)
        import orjson

        response = web.Response(
            body=orjson.dumps(body),
            content_type="application/json",
            headers={**decision.headers(), "x-adaptive-n": str(body["adaptive"]["n"])},
        )
        return response, float(body["adaptive"]["cost_usd"]), len(samples.choices)
    include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
    stream = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **decision.headers(),
        }
    )
    await stream.prepare(request)
    request[STREAM_STARTED] = True
    interval_s = state.snapshot.config.server.keepalive_interval_s
    work = asyncio.create_task(run_best_of_k(state, decision, data))
    cost_usd, drawn = 0.0, 0
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=interval_s)
            if done:
                break
            await stream.write(SSE_KEEPALIVE)
        body, samples, _ = work.result()
        cost_usd, drawn = float(body["adaptive"]["cost_usd"]), len(samples.choices)
        for chunk in _chunks(body, include_usage):
            await stream.write(sse_event(chunk))
    except ProxyError as error:
        await stream.write(sse_event(error.to_dict()))
    except Exception:  # the status line is sent: an honest SSE error beats a truncated stream
        log.exception("best-of-k failed after the stream started")
        await stream.write(
            sse_event(ProxyError("internal error in the proxy; see its log").to_dict())
        )
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
    await stream.write(SSE_DONE)
    await stream.write_eof()
    return stream, cost_usd, drawn
