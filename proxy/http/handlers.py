"""HTTP handlers: chat completions, decide, models, health, metrics."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from proxy.config.reload import Snapshot
from proxy.execute.seam import (
    EventStream,
    Execution,
    ExecutionRequest,
    Outcome,
)
from proxy.http.allocate_input import validate_allocate
from proxy.http.auth import authorize_model, client_of
from proxy.http.body import read_body
from proxy.http.drain import DRAIN
from proxy.http.explore import maybe_explore
from proxy.http.outcomes import record_outcome
from proxy.http.sse import json_response, write_sse
from proxy.http.state import (
    BUDGETS,
    CACHE,
    CONFIG,
    DECIDER,
    EXECUTORS,
    METRICS,
    POLICY_CONTEXT,
    PREDICTOR,
    RECORD,
)
from proxy.http.stats_ctx import STATS
from proxy.observe.access_log import RequestRecord
from proxy.policies.base import BasePolicy
from proxy.policies.decision import Decision
from proxy.wire.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ProxyError,
    ServiceUnavailableError,
)
from proxy.wire.protocol import (
    ChatCompletionRequest,
    client_choices,
    now_s,
    parse_json_body,
    validate_chat_request,
)
from proxy.wire.responses_api import is_responses_shaped, to_chat_body
from proxy.wire.tokens import count_message_tokens


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; every way the body can be bad is a 400 (or 408), never a 500."""
    return parse_json_body(await read_body(request))


async def _read_request(
    request: web.Request, snapshot: Snapshot, *, responses_shaped: bool = False
) -> tuple[dict[str, Any], ChatCompletionRequest]:
    data = await read_json(request)
    if responses_shaped and is_responses_shaped(data):
        data = to_chat_body(data, strict=False)  # ``input``/``instructions``, as on /v1/responses
    parsed = validate_chat_request(data)
    record = request.get(RECORD)
    if record is not None:
        record.model = parsed.model
        config = snapshot.config
        if parsed.model in config.policies:
            record.policy = parsed.model  # error responses name the policy too
        if config.server.access_log.include_messages:
            record.messages = data.get("messages")
    authorize_model(request, parsed.model)
    return data, parsed


def _note_decision(record: RequestRecord | None, decision: Decision) -> None:
    if record is not None:
        record.policy, record.arm, record.n = decision.policy, decision.arm, decision.n
        record.cache = "hit" if decision.cache_hit else "miss"
        record.upstream = decision.upstream


async def observe_budget(app: web.Application, decision: Decision, outcome: Outcome) -> None:
    """Feed a finished request's cost to its policy's budget controller (when it has one).

    A cascade learns the problem it answered while executing; that one is observed.
    """
    observed = decision
    if outcome.problem is not None:
        observed = replace(decision, problem=outcome.problem, arm_index=outcome.arm_index)
    if observed.problem is not None:
        await app[BUDGETS].observe(observed, cost_usd=outcome.cost_usd, n_samples=outcome.n_samples)


def _note_outcome(record: RequestRecord | None, outcome: Outcome, choices: int | None) -> None:
    if record is None:
        return
    record.cost_usd = outcome.cost_usd
    record.prompt_tokens, record.completion_tokens = (
        outcome.prompt_tokens,
        outcome.completion_tokens,
    )
    record.upstream_latency_ms = outcome.upstream_latency_ms
    record.fallback_upstream = outcome.fallback_upstream
    if outcome.answered_by is not None:
        record.arm, record.upstream = outcome.answered_by
    if outcome.n_samples:
        record.n = outcome.n_samples
    record.choices = choices


async def _decide(
    request: web.Request, snapshot: Snapshot, data: dict[str, Any], model: str
) -> tuple[Decision, BasePolicy | None]:
    """The decision for a request and its policy (``None``: a passthrough upstream model)."""
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
    n_choices = client_choices(data)
    limit = policy.max_choices()
    if limit is not None and n_choices > limit:
        # Refused before deciding: each choice is a distinct sample, and the policy's cap on
        # samples is the operator's, so neither fewer choices nor more samples is an answer.
        raise InvalidRequestError(
            f"n: policy {model!r} returns at most {limit} choices (each one a distinct "
            f"sample; it draws at most n_max = {limit}); ask for n ≤ {limit}",
            param="n",
        )
    decider = request.app.get(DECIDER)
    if decider is None:
        raise ServiceUnavailableError("the proxy is still starting")
    decision = await decider.decide(snapshot, model, data)
    return policy.fit_choices(decision, n_choices), policy


async def finish_request(
    request: web.Request,
    decision: Decision,
    policy: BasePolicy | None,
    chat_body: dict[str, Any] | None,
    outcome: Outcome,
    *,
    status: int,
    choices: int | None,
    explored: bool,
) -> None:
    """Everything a finished policy request is counted in, chat or Responses alike: metrics,
    the dashboard's stats (an append), the access record, the outcome log (``chat_body``: the
    request as chat, ``None`` for none) and the budget."""
    # A cascade learns which stage answers only while executing; count that stage.
    arm = outcome.answered_by[0] if outcome.answered_by is not None else decision.arm
    request.app[METRICS].record_request(decision.policy, arm, status)
    stats = request.app.get(STATS)
    if stats is not None:  # an append; the dashboard's aggregation runs in the background
        stats.record(
            decision.policy,
            arm,
            outcome.n_samples or decision.n,
            status,
            outcome.cost_usd,
            outcome.prompt_tokens,
            outcome.completion_tokens,
            decision.cache_hit,
            decision.fallback_reason,
        )
    _note_outcome(request.get(RECORD), outcome, choices)
    if chat_body is not None:
        record_outcome(
            request, decision, policy, chat_body, outcome, status=status, explored=explored
        )
    await observe_budget(request.app, decision, outcome)


async def _execute(
    request: web.Request,
    snapshot: Snapshot,
    decision: Decision,
    policy: BasePolicy | None,
    data: dict[str, Any],
    parsed: ChatCompletionRequest,
) -> Execution:
    """Hand the decision to the executor its policy's class registers (a bare model: route)."""
    job = ExecutionRequest(
        decision=decision,
        policy=policy,
        body=data,
        stream=bool(parsed.stream),
        include_usage=bool(parsed.stream_options and parsed.stream_options.include_usage),
        keepalive_interval_s=snapshot.config.server.keepalive_interval_s,
    )
    return await request.app[EXECUTORS].for_request(policy, decision).execute(job)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: decide, execute, answer in the OpenAI schema."""
    # One config for the whole request: a reload landing mid-request applies to the next one.
    snapshot = request.app[CONFIG].snapshot
    data, parsed = await _read_request(request, snapshot)
    decision, policy = await _decide(request, snapshot, data, parsed.model)
    record = request.get(RECORD)
    _note_decision(record, decision)
    status = 200
    outcome = Outcome()
    choices: int | None = None  # none were returned unless an execution answered
    explored = False
    try:
        result = await _execute(request, snapshot, decision, policy, data, parsed)
        outcome = result.outcome
        # The log says what the response's header says (a stream's: before its events).
        choices = int(result.headers.get("x-adaptive-choices", client_choices(data)))
        if isinstance(result, EventStream):
            return await write_sse(request, result)
        explored = maybe_explore(request, decision, policy, data, result)  # once this is sent
        return json_response(result)
    except asyncio.CancelledError:
        status = 499  # the client went away; its upstream requests were cancelled with it
        raise
    except Exception as exc:
        status = getattr(exc, "status", 500)
        raise
    finally:
        await finish_request(
            request,
            decision,
            policy,
            data,
            outcome,
            status=status,
            choices=choices,
            explored=explored,
        )


async def decide(request: web.Request) -> web.Response:
    """``POST /v1/adaptive/decide``: the decision the proxy would take; no upstream is called."""
    snapshot = request.app[CONFIG].snapshot
    data, parsed = await _read_request(request, snapshot, responses_shaped=True)
    decision, policy = await _decide(request, snapshot, data, parsed.model)
    body = decision.adaptive()
    body["fallback"] = policy.fallback_upstream() if policy is not None else None
    details = policy.decision_details(decision) if policy is not None else None
    if details:
        body.update(details)
    if policy is not None:
        budget = await request.app[BUDGETS].budget_snapshot(decision.policy)
        if budget is not None:
            body["budget"] = budget
    return _json(body, headers=decision.headers())


async def allocate(request: web.Request) -> web.Response:
    """``POST /v1/adaptive/allocate``: plan a total budget over a batch (greedy marginal)."""
    config = request.app[CONFIG].snapshot.config
    plan, conversations = await validate_allocate(await read_json(request))
    authorize_model(request, plan.model)
    policy = config.policies.get(plan.model)
    if policy is None:
        raise ModelNotFoundError(f"no policy named {plan.model!r}", param="model")
    if not policy.plans_allocation:
        raise InvalidRequestError(
            f"policy {plan.model!r} is {policy.type!r}; allocation plans route and best_of_k "
            "policies",
            param="model",
        )
    decider = request.app.get(DECIDER)
    if decider is None or decider.predictor is None:
        raise ServiceUnavailableError("the predictor is not loaded")
    server = config.server
    if len(plan.requests) > server.allocate_max_requests:
        raise InvalidRequestError(
            f"{len(plan.requests)} requests in one allocation; this proxy plans at most "
            f"{server.allocate_max_requests} (server.allocate_max_requests): split the batch",
            param="requests",
            code="request_too_large",
            status=413,
        )
    try:
        async with asyncio.timeout(server.allocate_timeout_s):
            # A learn: true policy plans on its learned head's predictions, as it decides.
            predictions = await decider.predict_batch(
                conversations,
                slice_size=server.allocate_slice,
                learned=plan.model if policy.learn else None,
            )
    except (ValueError, KeyError) as exc:
        raise InvalidRequestError(str(exc).strip("'\""), param="requests") from None
    except TimeoutError:
        raise ProxyError(
            f"the allocation did not finish within {server.allocate_timeout_s:g} s "
            "(server.allocate_timeout_s); split the batch into smaller ones",
            status=429,
            code="allocation_too_slow",
            headers={"Retry-After": "1"},
        ) from None

    def plan_budget() -> list[dict[str, Any]]:
        tokens = [count_message_tokens(c) for c in conversations]
        return policy.allocate(
            request.app[POLICY_CONTEXT], predictions, tokens, plan.budget, plan.budget_unit
        )

    try:
        # Counting and the greedy plan take ~0.1 s for 10,000 prompts: in a thread, so that
        # the loop keeps answering (pure Python and tiktoken both let it take its turn).
        allocations = await asyncio.to_thread(plan_budget)
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


def _model_items(request: web.Request) -> list[dict[str, Any]]:
    """The policies, then the passthrough upstream models, as the client may see them."""
    config = request.app[CONFIG].snapshot.config
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
    client = client_of(request)
    if client is not None:
        items = [item for item in items if client.limits.allows(str(item["id"]))]
    return items


async def models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the policies, then the passthrough upstream models."""
    return _json({"object": "list", "data": _model_items(request)})


async def retrieve_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{id}``: one policy or passthrough model; 404 for any other id."""
    model_id = request.match_info["model_id"]
    for item in _model_items(request):
        if item["id"] == model_id:
            return _json(item)
    raise ModelNotFoundError(f"The model {model_id!r} does not exist", param="model")


async def liveness(request: web.Request) -> web.Response:
    """``GET /health/liveness``: the process serves HTTP."""
    return _json({"status": "ok"})


async def readiness(request: web.Request) -> web.Response:
    """``GET /health/readiness``: config, predictor and cache are up (503 until then)."""
    app = request.app
    holder, cache, decider = app[CONFIG], app.get(CACHE), app.get(DECIDER)
    predictor_ready = PREDICTOR in app
    cache_ok = cache is not None and await cache.ping()
    draining = app[DRAIN].draining
    ready = predictor_ready and cache is not None and decider is not None and not draining
    body = {
        "status": "ready" if ready else ("draining" if draining else "starting"),
        "config_generation": holder.snapshot.generation,
        "config_error": holder.last_error,
        "predictor": "loaded"
        if app.get(PREDICTOR) is not None
        else ("none" if predictor_ready else "loading"),
        "cache": {
            "backend": cache.backend if cache is not None else None,
            "status": "ok" if cache_ok else "degraded (serving without it)",
        },
        "time": time.time(),
        # Which process answered: with ``serve --workers N`` each worker has its own.
        "pid": os.getpid(),
    }
    return _json(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus text exposition."""
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def register_routes(app: web.Application) -> None:
    """Attach every route of the proxy."""
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/chat/completions", chat_completions)
    app.router.add_post("/v1/adaptive/decide", decide)
    app.router.add_post("/v1/adaptive/allocate", allocate)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/models", models)
    # Model ids may hold slashes (``meta-llama/Llama-3.1-8B``).
    app.router.add_get("/v1/models/{model_id:.+}", retrieve_model)
    app.router.add_get("/models/{model_id:.+}", retrieve_model)
    app.router.add_get("/health/liveness", liveness)
    app.router.add_get("/health/readiness", readiness)
    app.router.add_get("/metrics", metrics)
