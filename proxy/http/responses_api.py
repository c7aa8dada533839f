"""``POST /v1/responses`` with a policy as ``model``: the policy runs as on chat completions.

Any other ``model`` is forwarded unchanged (:mod:`proxy.http.passthrough`). For a policy:

1. A ``previous_response_id`` the proxy recorded (:mod:`proxy.http.response_homes`) decides
   where the follow-up goes: to the upstream that created it (arm ``previous_response``, no
   prediction), or, for a response the proxy assembled, through the policy again with the kept
   conversation in front of the new input.
2. Otherwise the request, converted to chat messages (:mod:`proxy.wire.responses_api`), is
   decided like a chat completion (same cache, same predictor, same budgets).
3. A routed decision (one sample) to an upstream with ``responses_api: true`` is sent there as
   it is (:mod:`proxy.http.responses_native`), stream passed through event by event; so is an
   unknown ``previous_response_id``, which is that upstream's to resolve or refuse.
4. Everything else (best-of-k, sequential best-of-k, cascades, ladders, chat-only upstreams)
   runs on the chat executors and the answer is converted back: a Responses object, or a
   Responses event stream (route: as chunks arrive; best-of-k: once chosen, with keep-alives).

The decision is in the ``x-adaptive-*`` headers, in a top-level ``adaptive`` object (as on chat
completions), and in ``metadata["adaptive"]``: compact JSON of policy, arm, upstream, n, cost
and cache (≤ 512 characters, one of the 16 keys the Responses API allows).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from proxy.config.reload import Snapshot
from proxy.config.schema import Config
from proxy.execute.seam import EventStream, ExecutionRequest, Outcome
from proxy.http.auth import authorize_model
from proxy.http.body import read_body
from proxy.http.explore import explore_answer, maybe_explore
from proxy.http.handlers import _decide, _note_decision, finish_request
from proxy.http.passthrough import FORWARD_TO, forward
from proxy.http.response_homes import RESPONSE_HOMES, ResponseHome
from proxy.http.responses_native import (
    native_events,
    native_json,
    open_native,
    speaks_responses,
)
from proxy.http.responses_sse import chat_as_response_events, write_response_events
from proxy.http.state import CONFIG, EXECUTORS, RECORD
from proxy.policies.base import BasePolicy
from proxy.policies.decision import Decision
from proxy.policies.overrides import apply_responses_overrides
from proxy.wire.errors import InvalidRequestError
from proxy.wire.protocol import parse_json_body
from proxy.wire.responses_api import (
    ResponsesRequest,
    input_messages,
    new_id,
    response_from_chat,
    to_chat_body,
    validate_responses_request,
    with_decision_metadata,
)
from proxy.wire.responses_events import ResponseEventBuilder, named_event

# The arm reported when a follow-up goes where its previous response lives.
PREVIOUS_RESPONSE_ARM = "previous_response"


def _json(data: Any, headers: dict[str, str]) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json", headers=headers)


class _Decorator:
    """Adds the decision to response objects; the cost is read when the answer is complete."""

    def __init__(self, adaptive: dict[str, Any], outcome: Outcome) -> None:
        self.adaptive = adaptive
        self.outcome = outcome

    def __call__(self, response: dict[str, Any]) -> dict[str, Any]:
        adaptive = {**self.adaptive, "cost_usd": self.outcome.cost_usd}
        response["adaptive"] = adaptive
        response["metadata"] = with_decision_metadata(response.get("metadata"), adaptive)
        return response


async def create_response(request: web.Request) -> web.StreamResponse:
    """``POST /v1/responses``: a policy decides and executes; other models pass through."""
    snapshot = request.app[CONFIG].snapshot
    try:
        data = parse_json_body(await read_body(request))
    except InvalidRequestError:
        return await forward(request)  # not ours to judge: the upstream's answer, as before
    model = data.get("model")
    if not isinstance(model, str) or model not in snapshot.config.policies:
        return await forward(request)
    parsed = validate_responses_request(data)
    authorize_model(request, model)
    record = request.get(RECORD)
    if record is not None:
        record.model = record.policy = model
        if snapshot.config.server.access_log.include_messages:
            record.messages = input_messages(data, strict=False)  # as chat requests log them
    return await _run_policy(request, snapshot, data, parsed, model)


async def _run_policy(
    request: web.Request,
    snapshot: Snapshot,
    data: dict[str, Any],
    parsed: ResponsesRequest,
    model: str,
) -> web.StreamResponse:
    config = snapshot.config
    policy: BasePolicy = config.policies[model]
    previous = parsed.previous_response_id
    home = await request.app[RESPONSE_HOMES].get(previous) if previous else None
    if home is not None and home.upstream is not None and home.upstream not in config.upstreams:
        home = None  # its upstream left the config: as unknown as an id never seen
    prior = list(home.messages) if home is not None and home.messages is not None else None
    # The request as chat sees it: what it was decided on, and what a ``learn: true`` policy's
    # outcome log and exploration read (``None``: a follow-up that goes where it lives).
    chat_view: dict[str, Any] | None = None
    if home is not None and home.upstream is not None:
        decision = Decision(
            policy=model,
            policy_version=config.policy_version(model),
            arm=PREVIOUS_RESPONSE_ARM,
            upstream=home.upstream,
        )
        native = True
    else:
        chat_view = to_chat_body(data, prior=prior, strict=False)
        decision, _ = await _decide(request, snapshot, chat_view, model)
        executor = request.app[EXECUTORS].for_request(policy, decision)
        routed = executor is request.app[EXECUTORS].route and decision.n == 1
        # An unknown id goes natively to the decided upstream, whose error it is to give.
        native = (previous is not None and home is None) or (
            prior is None and routed and speaks_responses(config, decision.upstream)
        )
    record = request.get(RECORD)
    _note_decision(record, decision)
    status = 200
    outcome = Outcome()
    explored = [False]
    try:
        if native:
            return await _native(
                request, config, decision, policy, data, parsed, outcome, chat_view, explored
            )
        return await _via_chat(
            request, snapshot, decision, policy, data, parsed, prior, outcome, explored
        )
    except asyncio.CancelledError:
        status = 499
        raise
    except Exception as exc:
        status = getattr(exc, "status", 500)
        raise
    finally:
        await finish_request(
            request,
            decision,
            policy,
            chat_view,
            outcome,
            status=status,
            choices=1 if status == 200 else None,
            explored=explored[0],
        )


async def _native(
    request: web.Request,
    config: Config,
    decision: Decision,
    policy: BasePolicy,
    data: dict[str, Any],
    parsed: ResponsesRequest,
    outcome: Outcome,
    chat_view: dict[str, Any] | None,
    explored: list[bool],
) -> web.StreamResponse:
    """One call to an upstream that serves the Responses API, passed through."""
    fallback = policy.fallback_upstream() if decision.arm != PREVIOUS_RESPONSE_ARM else None
    if fallback is not None and not speaks_responses(config, fallback):
        fallback = None
    # The arm's overrides go to its own upstream only, as on chat (proxy.execute.route).
    armed = apply_responses_overrides(
        data, decision.overrides, override_client=decision.override_client
    )
    reply = await open_native(request.app, decision.upstream, armed, fallback, plain=data)
    outcome.n_samples = 1
    outcome.upstream_latency_ms = round(reply.latency_s * 1000, 3)
    headers = decision.headers()
    headers["x-adaptive-n"] = headers["x-adaptive-choices"] = "1"
    adaptive = decision.adaptive()
    adaptive["n"] = adaptive["choices"] = 1
    adaptive["upstream_latency_ms"] = outcome.upstream_latency_ms
    if reply.upstream != decision.upstream:
        adaptive["fallback_upstream"] = headers["x-adaptive-fallback"] = reply.upstream
        outcome.fallback_upstream = reply.upstream
    decorate = _Decorator(adaptive, outcome)
    if not parsed.stream:
        response = await native_json(request.app, reply, outcome, decorate)
        if chat_view is not None:  # once this is sent, the arm not chosen may be explored
            text = response_text(response)
            explored[0] = explore_answer(request, decision, policy, chat_view, outcome, text)
        return _json(response, headers)

    def error_event(error: dict[str, Any]) -> bytes:
        number = reply.last_sequence + 1
        return named_event({"type": "error", "sequence_number": number, **error})

    return await write_response_events(
        request,
        native_events(request.app, reply, outcome, decorate),
        headers=headers,
        error_event=error_event,
        source=reply.upstream,
    )


def response_text(response: dict[str, Any]) -> str | None:
    """The text of a Responses object's output messages (``None`` when it has none)."""
    parts = [
        part.get("text")
        for item in response.get("output") or []
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    ]
    texts = [p for p in parts if isinstance(p, str)]
    return "".join(texts) if texts else None


def _assistant_message(chat: dict[str, Any]) -> dict[str, Any]:
    choices = chat.get("choices") or [{}]
    message = dict(choices[0].get("message") or {}) if isinstance(choices[0], dict) else {}
    kept = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        kept["tool_calls"] = message["tool_calls"]
    return kept


async def _via_chat(
    request: web.Request,
    snapshot: Snapshot,
    decision: Decision,
    policy: BasePolicy,
    data: dict[str, Any],
    parsed: ResponsesRequest,
    prior: list[dict[str, Any]] | None,
    outcome: Outcome,
    explored: list[bool],
) -> web.StreamResponse:
    """The policy's chat execution, answered as a Responses object or event stream."""
    chat = to_chat_body(data, prior=prior, strict=True)
    job = ExecutionRequest(
        decision=decision,
        policy=policy,
        body=chat,
        stream=bool(parsed.stream),
        include_usage=True,  # the terminal event carries usage
        keepalive_interval_s=snapshot.config.server.keepalive_interval_s,
    )
    result = await request.app[EXECUTORS].for_request(policy, decision).execute(job)
    response_id = new_id("resp")
    homes = request.app[RESPONSE_HOMES]
    keep = parsed.store is not False

    async def remember(message: dict[str, Any]) -> None:
        if keep:
            await homes.put(response_id, ResponseHome(messages=(*chat["messages"], message)))

    if not isinstance(result, EventStream):
        _copy_outcome(outcome, result.outcome)
        response = response_from_chat(data, result.body, response_id)
        adaptive = dict(result.body.get("adaptive") or decision.adaptive())
        response["adaptive"] = adaptive
        response["metadata"] = with_decision_metadata(response.get("metadata"), adaptive)
        await remember(_assistant_message(result.body))
        explored[0] = maybe_explore(request, decision, policy, chat, result)  # once this is sent
        return _json(response, result.headers)
    stream = result
    builder = ResponseEventBuilder({})
    state: dict[str, Any] = {}

    def decorate(response: dict[str, Any]) -> dict[str, Any]:
        adaptive = state.setdefault("adaptive", stream.adaptive())
        adaptive = {**adaptive, "cost_usd": stream.outcome.cost_usd}
        response["adaptive"] = adaptive
        response["metadata"] = with_decision_metadata(response.get("metadata"), adaptive)
        return response

    async def finished(final: dict[str, Any], message: dict[str, Any]) -> None:
        await remember(message)

    try:
        return await write_response_events(
            request,
            chat_as_response_events(stream, data, response_id, builder, decorate, finished),
            headers=stream.headers,
            error_event=builder.error,
            source=stream.source,
            warmup=stream.warmup,
            keepalive_interval_s=stream.keepalive_interval_s,
        )
    finally:
        # The executor filled its outcome as the stream ran; the handler's bookkeeping reads it.
        _copy_outcome(outcome, stream.outcome)


def _copy_outcome(target: Outcome, source: Outcome) -> None:
    for name in Outcome.__slots__:
        setattr(target, name, getattr(source, name))


async def stored_response(request: web.Request) -> web.StreamResponse:
    """``/v1/responses/{id}[/…]`` (retrieve, delete, cancel, input items): forwarded to the
    upstream that created that response, when the proxy recorded one; else as any passthrough."""
    home = await request.app[RESPONSE_HOMES].get(request.match_info["response_id"])
    upstreams = request.app[CONFIG].snapshot.config.upstreams
    if home is not None and home.upstream is not None and home.upstream in upstreams:
        request[FORWARD_TO] = home.upstream
    return await forward(request)


def register_responses_routes(app: web.Application) -> None:
    """``POST /v1/responses`` and ``/v1/responses/{id}[/…]``, before the passthrough routes."""
    # ``endpoint`` as the passthrough routes name it: upstream models are forwarded from here.
    app.router.add_post("/v1/{endpoint:responses}", create_response)
    stored = app.router.add_resource(
        "/v1/{endpoint:responses}/{response_id:[^/]+}{rest:(?:/.*)?}", name="stored-response"
    )
    stored.add_route("*", stored_response)
