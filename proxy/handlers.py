"""HTTP handlers: chat completions, decide, models, health, metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from proxy import bestofk
from proxy.errors import InvalidRequestError, ModelNotFoundError, ServiceUnavailableError
from proxy.middleware import STREAM_STARTED
from proxy.policies.base import Decision
from proxy.protocol import (
    AllocateRequest,
    ChatCompletionRequest,
    invalid_from_validation,
    now_s,
    parse_json_body,
    validate_chat_request,
)
from proxy.state import STATE, ProxyState
from proxy.tokens import count_message_tokens


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


async def _read_request(request: web.Request) -> tuple[dict[str, Any], ChatCompletionRequest]:
    data = parse_json_body(await request.read())
    return data, validate_chat_request(data)


async def _decide(
    state: ProxyState, data: dict[str, Any], model: str
) -> tuple[Decision, str | None]:
    """The decision for a request and the fallback upstream of its policy."""
    snapshot = state.snapshot
    config = snapshot.config
    policy = config.policies.get(model)
    if policy is None:
        upstream = config.find_upstream(model)
        if upstream is None:
            raise ModelNotFoundError(
                f"The model {model!r} does not exist: it is neither a policy "
                f"({', '.join(sorted(config.policies)) or 'none'}) nor an upstream model.",
                param="model",
            )
        decision = Decision(
            policy="passthrough", policy_version="", arm="passthrough", upstream=upstream
        )
        return decision, None
    if state.decider is None:
        raise ServiceUnavailableError("the proxy is still starting")
    decision = await state.decider.decide(snapshot, model, data)
    return decision, policy.fallback_upstream()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: decide, execute, answer in the OpenAI schema."""
    state = request.app[STATE]
    data, parsed = await _read_request(request)
    decision, fallback = await _decide(state, data, parsed.model)
    status, cost_usd, n_samples = 200, 0.0, 0
    try:
        if decision.n > 1 or decision.reranker is not None:
            response, cost_usd, n_samples = await bestofk.respond(
                request, state, decision, data, parsed
            )
            return response
        assert state.executor is not None
        n_samples = 1
        if parsed.stream:
            return await _stream(request, state, decision, data, parsed, fallback)
        body, outcome = await state.executor.respond_json(decision, data, fallback)
        cost_usd = outcome.cost_usd
        return _json(body, headers=decision.headers())
    except asyncio.CancelledError:
        status = 499  # the client went away; its upstream requests were cancelled with it
        raise
    except Exception as exc:
        status = getattr(exc, "status", 500)
        raise
    finally:
        state.metrics.record_request(decision.policy, decision.arm, status)
        if decision.problem is not None:
            await state.budgets.observe(decision, cost_usd=cost_usd, n_samples=n_samples)


async def _stream(
    request: web.Request,
    state: ProxyState,
    decision: Decision,
    data: dict[str, Any],
    parsed: ChatCompletionRequest,
    fallback: str | None,
) -> web.StreamResponse:
    assert state.executor is not None
    include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
    stream = await state.executor.open_stream(decision, data, fallback, include_usage)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **decision.headers(),
        }
    )
    try:
        await response.prepare(request)
        request[STREAM_STARTED] = True
    except BaseException:
        await stream.aclose()
        raise
    await state.executor.pipe_stream(
        request, response, stream, decision, include_usage=include_usage, messages=data["messages"]
    )
    await response.write_eof()
    return response


async def decide(request: web.Request) -> web.Response:
    """``POST /v1/adaptive/decide``: the decision the proxy would take; no upstream is called."""
    state = request.app[STATE]
    data, parsed = await _read_request(request)
    decision, fallback = await _decide(state, data, parsed.model)
    body = decision.adaptive()
    body["fallback"] = fallback
    if decision.policy in state.snapshot.config.policies:
        budget = await state.budgets.budget_snapshot(decision.policy)
        if budget is not None:
            body["budget"] = budget
    return _json(body, headers=decision.headers())


async def allocate(request: web.Request) -> web.Response:
    """``POST /v1/adaptive/allocate``: plan a total budget over a batch (greedy marginal)."""
    state = request.app[STATE]
    raw = parse_json_body(await request.read())
    try:
        plan = AllocateRequest.model_validate(raw)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None
    snapshot = state.snapshot
    policy = snapshot.config.policies.get(plan.model)
    if policy is None:
        raise ModelNotFoundError(f"no policy named {plan.model!r}", param="model")
    if not policy.plans_allocation:
        raise InvalidRequestError(
            f"policy {plan.model!r} is {policy.type!r}; allocation plans route and best_of_k "
            "policies",
            param="model",
        )
    if state.decider is None or state.decider.predictor is None:
        raise ServiceUnavailableError("the predictor is not loaded")
    conversations = [[m.model_dump() for m in item.messages] for item in plan.requests]
    try:
        predictions = await state.decider.predict_batch(conversations)
        tokens = [count_message_tokens(c) for c in conversations]
        allocations = policy.allocate(
            state.policy_context, predictions, tokens, plan.budget, plan.budget_unit
        )
    except (ValueError, KeyError) as exc:
        raise InvalidRequestError(str(exc).strip("'\""), param="budget") from None
    total = sum(a["n"] for a in allocations)
    return _json(
        {
            "object": "adaptive.allocation",
            "model": plan.model,
            "budget": plan.budget,
            "budget_unit": plan.budget_unit,
            "total_n": total,
            "allocations": allocations,
        }
    )


async def models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the policies, then the passthrough upstream models."""
    config = request.app[STATE].snapshot.config
    created = now_s()
    items = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "adaptive-proxy",
            "adaptive": {"type": policy.type},
        }
        for name, policy in config.policies.items()
    ]
    seen = set(config.policies)
    for name, upstream in config.upstreams.items():
        for model_id in (upstream.model, name):
            if model_id not in seen:
                seen.add(model_id)
                items.append(
                    {
                        "id": model_id,
                        "object": "model",
                        "created": created,
                        "owned_by": f"upstream:{name}",
                    }
                )
    return _json({"object": "list", "data": items})


async def liveness(request: web.Request) -> web.Response:
    """``GET /health/liveness``: the process serves HTTP."""
    return _json({"status": "ok"})


async def readiness(request: web.Request) -> web.Response:
    """``GET /health/readiness``: config, predictor and cache are up (503 until then)."""
    state = request.app[STATE]
    cache_ok = state.cache is not None and await state.cache.ping()
    ready = state.predictor_ready and state.cache is not None and state.decider is not None
    body = {
        "status": "ready" if ready else "starting",
        "config_generation": state.snapshot.generation,
        "config_error": state.holder.last_error,
        "predictor": "loaded"
        if state.predictor is not None
        else ("none" if state.predictor_ready else "loading"),
        "cache": {
            "backend": state.cache.backend if state.cache is not None else None,
            "status": "ok" if cache_ok else "degraded (serving without it)",
        },
        "time": time.time(),
    }
    return _json(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text exposition."""
    body, content_type = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def register_routes(app: web.Application) -> None:
    """Attach every route of the proxy."""
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/chat/completions", chat_completions)
    app.router.add_post("/v1/adaptive/decide", decide)
    app.router.add_post("/v1/adaptive/allocate", allocate)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/models", models)
    app.router.add_get("/health/liveness", liveness)
    app.router.add_get("/health/readiness", readiness)
    app.router.add_get("/metrics", metrics)
