"""litellm adapter for non-OpenAI providers (Anthropic, Bedrock, Vertex, …).

litellm is imported here, inside functions, and only when an upstream with a ``provider`` other
than ``openai`` is called: it is slow to import and large in memory, and OpenAI-compatible
upstreams never need it. ``LITELLM_LOCAL_MODEL_COST_MAP`` must be set by the command line before
this runs so litellm never fetches its price map.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from proxy.config.schema import UpstreamConfig
from proxy.wire.errors import UpstreamError, UpstreamTimeoutError, map_status_error


def thinking_param(budget_tokens: int) -> dict[str, Any]:
    """litellm's ``thinking`` for a thinking budget: Anthropic's ``thinking.budget_tokens``,
    which litellm also maps to Gemini's ``thinking_budget``; 0 turns thinking off."""
    if budget_tokens <= 0:
        return {"type": "disabled"}
    return {"type": "enabled", "budget_tokens": budget_tokens}


def _call_kwargs(
    cfg: UpstreamConfig, payload: dict[str, Any], api_key: str | None
) -> dict[str, Any]:
    kwargs = {k: v for k, v in payload.items() if k not in ("model", "stream_options")}
    # An arm's ``thinking_budget_tokens`` override (:mod:`proxy.policies.overrides`) becomes
    # the provider's own parameter; it already displaced (or yielded to) a client ``thinking``.
    budget = kwargs.pop("thinking_budget_tokens", None)
    if isinstance(budget, int) and not isinstance(budget, bool):
        kwargs["thinking"] = thinking_param(budget)
    kwargs["model"] = f"{cfg.provider}/{cfg.model}"
    kwargs["timeout"] = cfg.timeout_s
    kwargs["num_retries"] = cfg.retries
    if cfg.base_url:
        kwargs["api_base"] = cfg.base_url
    if api_key:
        kwargs["api_key"] = api_key
    return kwargs


def _map_exception(name: str, exc: Exception) -> UpstreamError:
    status = getattr(exc, "status_code", None)
    if type(exc).__name__ in ("Timeout", "APITimeoutError"):
        return UpstreamTimeoutError(f"upstream {name!r} timed out", upstream=name)
    if isinstance(status, int):
        body = orjson.dumps({"error": {"message": str(getattr(exc, "message", "")) or None}})
        return map_status_error(name, status, body, {})
    return UpstreamError(f"upstream {name!r} failed: {type(exc).__name__}", upstream=name)


async def litellm_chat(
    name: str, cfg: UpstreamConfig, payload: dict[str, Any], api_key: str | None
) -> dict[str, Any]:
    """One non-streaming completion through litellm, as an OpenAI response dict."""
    import litellm

    try:
        response = await litellm.acompletion(**_call_kwargs(cfg, payload, api_key))
    except Exception as exc:  # litellm raises its own hierarchy; map it to ours
        raise _map_exception(name, exc) from None
    data: dict[str, Any] = response.model_dump()
    return data


async def litellm_stream(
    name: str, cfg: UpstreamConfig, payload: dict[str, Any], api_key: str | None
) -> tuple[AsyncIterator[bytes], Callable[[], Any]]:
    """A streaming completion through litellm, as SSE ``data:`` events."""
    import litellm

    kwargs = _call_kwargs(cfg, payload, api_key)
    kwargs["stream"] = True
    kwargs["stream_options"] = {"include_usage": True}
    try:
        stream = await litellm.acompletion(**kwargs)
    except Exception as exc:
        raise _map_exception(name, exc) from None

    async def events() -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                yield b"data: " + orjson.dumps(chunk.model_dump(exclude_none=True)) + b"\n\n"
        except Exception as exc:
            raise _map_exception(name, exc) from None
        yield b"data: [DONE]\n\n"

    def close() -> Any:
        aclose = getattr(stream, "aclose", None)
        return aclose() if aclose is not None else None

    return events(), close
