"""Responses requests sent as they are to an upstream that serves ``/v1/responses`` itself.

An upstream with ``responses_api: true`` gets a routed Responses request unchanged (only
``model`` is swapped for the upstream's own), so everything the Responses API has and chat
completions lack (``previous_response_id``, ``store``, built-in tools, reasoning items) works.
The JSON answer, or the event stream event by event, comes back with the decision added to the
response object (``adaptive`` and ``metadata.adaptive``) of ``response.created`` and of the
terminal event; each response id is recorded as living on that upstream.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from proxy.config.schema import Config
from proxy.execute.seam import Outcome
from proxy.http.response_homes import RESPONSE_HOMES, ResponseHome
from proxy.http.state import COSTS, METRICS, UPSTREAMS
from proxy.upstream.pricing import account_usage
from proxy.upstream.sse_reader import sse_events
from proxy.wire.errors import InvalidRequestError, ProxyError, UpstreamError
from proxy.wire.responses_events import event_payload, named_event

# Events whose payload carries the whole response object.
_RESPONSE_EVENTS = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)
_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def speaks_responses(config: Config, upstream: str) -> bool:
    """Whether ``upstream`` serves ``/v1/responses`` itself (``responses_api: true``)."""
    cfg = config.upstreams.get(upstream)
    return cfg is not None and cfg.provider == "openai" and cfg.responses_api


def _should_fall_back(error: ProxyError) -> bool:
    return isinstance(error, UpstreamError) and (error.status >= 500 or error.status == 429)


@dataclass(slots=True)
class NativeReply:
    """An open upstream answer to a Responses request."""

    upstream: str
    response: aiohttp.ClientResponse
    latency_s: float
    # The ``sequence_number`` of the last event passed on (an error event follows it).
    last_sequence: int = -1


async def open_native(
    app: web.Application,
    upstream: str,
    data: dict[str, Any],
    fallback: str | None,
    *,
    plain: dict[str, Any] | None = None,
) -> NativeReply:
    """POST ``data`` to ``upstream``'s ``/responses`` (then ``plain``, the request without the
    arm's overrides, to ``fallback``'s, on server trouble)."""
    try:
        return await _open_one(app, upstream, data)
    except ProxyError as error:
        if not fallback or fallback == upstream or not _should_fall_back(error):
            raise
        return await _open_one(app, fallback, data if plain is None else plain)


async def _open_one(app: web.Application, name: str, data: dict[str, Any]) -> NativeReply:
    upstreams = app[UPSTREAMS]
    cfg = upstreams.config(name)
    if cfg.base_url is None or cfg.provider != "openai":
        raise InvalidRequestError(
            f"upstream {name!r} (provider {cfg.provider!r}) is reached through litellm for chat "
            "only: it cannot resolve a previous_response_id; send the conversation as input",
            param="previous_response_id",
        )
    body = orjson.dumps({**data, "model": cfg.model})
    headers = upstreams.request_headers(name)
    resp, latency_s = await upstreams.forward(
        name, "POST", "/responses", query={}, body=body, headers=headers
    )
    return NativeReply(name, resp, latency_s)


def _account(app: web.Application, name: str, usage: Any, outcome: Outcome) -> None:
    usage = usage if isinstance(usage, dict) else {}
    prompt = int(usage.get("input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    outcome.cost_usd += account_usage(app[COSTS], app[METRICS], name, prompt, completion, 1)
    outcome.prompt_tokens, outcome.completion_tokens = prompt, completion


async def native_json(
    app: web.Application,
    reply: NativeReply,
    outcome: Outcome,
    decorate: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """The upstream's whole response object, accounted, recorded and decorated."""
    upstreams = app[UPSTREAMS]
    try:
        raw = await reply.response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamError(
            f"upstream {reply.upstream!r} dropped the answer: {type(exc).__name__}",
            upstream=reply.upstream,
        ) from None
    finally:
        reply.response.release()
    try:
        data = orjson.loads(upstreams.redactor.raw(raw))
    except orjson.JSONDecodeError:
        raise UpstreamError(
            f"upstream {reply.upstream!r} sent a body that is not JSON", upstream=reply.upstream
        ) from None
    if not isinstance(data, dict):
        raise UpstreamError(
            f"upstream {reply.upstream!r} sent a malformed response", upstream=reply.upstream
        )
    _account(app, reply.upstream, data.get("usage"), outcome)
    if isinstance(data.get("id"), str):
        await app[RESPONSE_HOMES].put(data["id"], ResponseHome(upstream=reply.upstream))
    return decorate(data)


async def native_events(
    app: web.Application,
    reply: NativeReply,
    outcome: Outcome,
    decorate: Callable[[dict[str, Any]], dict[str, Any]],
) -> AsyncGenerator[bytes, None]:
    """The upstream's events as they arrive; response objects in them are decorated."""
    upstreams = app[UPSTREAMS]
    cfg = upstreams.config(reply.upstream)
    events = sse_events(reply.upstream, cfg, reply.response, upstreams.redactor)
    try:
        async for event in events:  # mid-stream failures arrive as UpstreamError
            payload = event_payload(event)
            kind = payload.get("type") if payload is not None else None
            if payload is not None and isinstance(payload.get("sequence_number"), int):
                reply.last_sequence = payload["sequence_number"]
            if payload is None or kind not in _RESPONSE_EVENTS:
                yield event
                continue
            response = payload.get("response")
            if isinstance(response, dict):
                if kind == "response.created" and isinstance(response.get("id"), str):
                    home = ResponseHome(upstream=reply.upstream)
                    await app[RESPONSE_HOMES].put(response["id"], home)
                if kind in _TERMINAL_EVENTS:
                    _account(app, reply.upstream, response.get("usage"), outcome)
                payload["response"] = decorate(response)
            yield named_event(payload)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        reply.response.release()
