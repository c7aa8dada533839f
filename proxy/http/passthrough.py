"""The OpenAI endpoints that are not chat: forwarded unchanged to one upstream.

``/v1/embeddings``, ``/v1/completions``, ``/v1/responses`` (its sub-resources, and creating a
response with an upstream model; a policy's responses are :mod:`proxy.http.responses_api`'s),
``/v1/moderations``, ``/v1/audio/*`` and ``/v1/images/*`` go to the upstream that serves the
request's ``model`` (an upstream's name or model id; a JSON field or a multipart form field), or
else to ``server.default_upstream``; a policy name is a 400. The body travels byte for byte once
its Content-Encoding is undone (multipart uploads too); the answer streams back chunk by chunk
(SSE, audio). Sending, retries (before the first byte), timeouts, redaction and error mapping are
:class:`~proxy.upstream.client.UpstreamClient`'s, as for chat; so are the upstream metrics.
Only chat completions and created responses are adaptive.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import orjson
from aiohttp import web

from proxy.http.auth import authorize_model
from proxy.http.body import read_body
from proxy.http.middleware import STREAM_STARTED
from proxy.http.state import CONFIG, COSTS, METRICS, RECORD, UPSTREAMS
from proxy.observe.metrics import Metrics
from proxy.upstream.pricing import CostModel, account_usage
from proxy.wire.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    UpstreamError,
)
from proxy.wire.protocol import SSE_DONE, sse_event

# The client's headers that describe the body or the wanted answer; nothing else is forwarded
# (the proxy sends its own credentials).
_FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "OpenAI-Beta")
_FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Retry-After", "Content-Disposition")
_MULTIPART_MODEL = re.compile(
    rb'Content-Disposition:\s*form-data;\s*name="model"\r?\n(?:[^\r\n]+\r?\n)*\r?\n([^\r\n]{1,256})\r?\n',
    re.IGNORECASE,
)
# Usage is read from JSON answers up to this size (an embeddings batch can be tens of MB).
_MAX_USAGE_SCAN_BYTES = 64 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024


def _requested_model(request: web.Request, body: bytes) -> str | None:
    """The ``model`` of a JSON body or of a multipart form (``None`` when there is none)."""
    content_type = request.headers.get("Content-Type", "")
    if content_type.startswith("multipart/form-data"):
        match = _MULTIPART_MODEL.search(body)
        return match.group(1).decode("utf-8", "replace").strip() if match else None
    if not body:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequestError("request body is not valid JSON") from None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


# Set by a handler that knows the upstream a request belongs to (a stored response's).
FORWARD_TO = web.RequestKey("adaptive_forward_to", str)


def _choose_upstream(request: web.Request, model: str | None) -> str:
    config = request.app[CONFIG].snapshot.config
    name = config.find_upstream(model) if model else None
    if name is None and model in config.policies:
        # The default upstream would only answer that it has no such model.
        served = sorted({u.model for u in config.upstreams.values() if u.provider == "openai"})
        raise InvalidRequestError(
            f"{model!r} is a policy, and policies apply to chat completions and responses "
            f"only (POST /v1/chat/completions, POST /v1/responses); {request.path} takes an "
            "upstream model "
            f"({', '.join(served) or 'none'})",
            param="model",
            code="policy_chat_only",
        )
    if name is None:
        name = config.server.default_upstream
    if name is None:
        raise ModelNotFoundError(
            f"no upstream serves model {model!r} on {request.path} and there is no "
            "server.default_upstream"
            if model
            else f"{request.path} needs a 'model' (or a server.default_upstream)",
            param="model",
        )
    if config.upstreams[name].provider != "openai":
        raise InvalidRequestError(
            f"upstream {name!r} (provider {config.upstreams[name].provider!r}) is reached "
            f"through litellm for chat only; {request.path} needs an OpenAI-compatible base_url",
            param="model",
        )
    return name


def _rewrite_model(body: bytes, model: str | None, upstream_model: str, is_json: bool) -> bytes:
    """Name the upstream's own model when the client named the upstream instead."""
    if not is_json or model is None or model == upstream_model:
        return body
    data = orjson.loads(body)
    data["model"] = upstream_model
    return orjson.dumps(data)


def _usage(body: bytes) -> tuple[int, int] | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens", 0))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    return (int(prompt or 0), int(completion or 0))


def _account(costs: CostModel, metrics: Metrics, name: str, usage: tuple[int, int]) -> float:
    # n=0: these calls must not move the completion-length estimate chat routing relies on.
    return account_usage(costs, metrics, name, usage[0], usage[1], n=0)


async def forward(request: web.Request) -> web.StreamResponse:
    """Forward one non-chat OpenAI request to its upstream and stream the answer back."""
    body = await read_body(request)
    model = _requested_model(request, body)
    if model is not None:
        authorize_model(request, model)
    name = request.get(FORWARD_TO) or _choose_upstream(request, model)
    upstreams = request.app.get(UPSTREAMS)
    assert upstreams is not None  # set before the app serves
    cfg = upstreams.config(name)
    endpoint = request.match_info["endpoint"]
    content_type = request.headers.get("Content-Type", "")
    is_json = content_type.startswith("application/json") or (not content_type and body[:1] == b"{")
    upstream_name_used = model is not None and model == name and cfg.model != name
    body = _rewrite_model(body, model if upstream_name_used else None, cfg.model, is_json)
    headers = upstreams.request_headers(name)
    headers.pop("Content-Type", None)
    for header in _FORWARDED_REQUEST_HEADERS:
        if header in request.headers:
            headers[header] = request.headers[header]
    record = request.get(RECORD)
    if record is not None:
        record.model, record.upstream, record.arm = model, name, "passthrough"
    metrics = request.app[METRICS]
    status = 502
    try:
        resp, latency_s = await upstreams.forward(
            name,
            request.method,
            request.path.removeprefix("/v1"),
            query=request.query,
            body=body,
            headers=headers,
        )
        status = resp.status
        if record is not None:
            record.upstream_latency_ms = round(latency_s * 1000, 3)
        return await _relay(request, resp, name)
    except UpstreamError as error:
        status = error.status
        raise
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        metrics.record_passthrough(endpoint, name, status)


async def _relay(
    request: web.Request, resp: aiohttp.ClientResponse, name: str
) -> web.StreamResponse:
    """Stream the upstream's answer; usage in a JSON answer is booked like chat's."""
    try:
        headers = {h: resp.headers[h] for h in _FORWARDED_RESPONSE_HEADERS if h in resp.headers}
        is_json = resp.headers.get("Content-Type", "").startswith("application/json")
        if is_json and (resp.content_length or 0) <= _MAX_USAGE_SCAN_BYTES:
            payload = await request.app[UPSTREAMS].read_answer(name, resp)
            usage = _usage(payload)
            record = request.get(RECORD)
            if usage is not None:
                cost = _account(request.app[COSTS], request.app[METRICS], name, usage)
                if record is not None:
                    record.prompt_tokens, record.completion_tokens = usage
                    record.cost_usd = cost
            return web.Response(status=resp.status, body=payload, headers=headers)
        response = web.StreamResponse(status=resp.status, headers=headers)
        await response.prepare(request)
        request[STREAM_STARTED] = response
        # Text answers lose any secret an upstream echoes (a secret split across two chunks
        # escapes this; JSON answers above are redacted whole); audio and image bytes are not
        # text and travel untouched.
        redact = request.app[UPSTREAMS].redactor.raw if _is_text(headers) else None
        try:
            async for chunk in resp.content.iter_chunked(_CHUNK_BYTES):
                await response.write(redact(chunk) if redact is not None else chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                raise  # a byte stream cannot say more than stopping short
            error = UpstreamError(
                f"upstream {name!r} dropped the stream: {type(exc).__name__}", upstream=name
            )
            await response.write(sse_event(error.to_dict()) + SSE_DONE)
        await response.write_eof()
        return response
    finally:
        resp.release()


def _is_text(headers: dict[str, str]) -> bool:
    content_type = headers.get("Content-Type", "")
    return content_type.startswith(("text/", "application/json", "application/x-ndjson"))


PASSTHROUGH_ENDPOINTS = ("embeddings", "completions", "moderations", "responses", "audio", "images")


def register_passthrough_routes(app: web.Application) -> None:
    """Attach the forwarded endpoints (any method: ``GET /v1/responses/{id}`` too)."""
    for endpoint in PASSTHROUGH_ENDPOINTS:
        resource = app.router.add_resource(
            f"/v1/{{endpoint:{endpoint}}}{{rest:(?:/.*)?}}", name=f"passthrough-{endpoint}"
        )
        resource.add_route("*", forward)
