"""Reading an upstream's SSE stream: complete events, each checked before it is forwarded.

Lines are split here rather than by aiohttp's ``readline`` (whose line limit breaks on one large
chunk), comments are dropped, ``data:`` is normalised to ``data: ``, every configured secret is
redacted, and each event must be an OpenAI stream event (``data: <JSON object>`` or
``data: [DONE]``): anything else, or a stream over ``max_response_bytes``, ends it with an
:class:`~proxy.wire.errors.UpstreamError`, which the executor turns into an SSE error event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson

from proxy.config.schema import UpstreamConfig
from proxy.upstream.redact import Redactor
from proxy.wire.errors import UpstreamError, UpstreamTimeoutError

# Bounds the memory one SSE event may take; far above any real chunk.
_MAX_EVENT_BYTES = 64 * 1024 * 1024
_SSE_FIELDS = (b"data:", b"event:", b"id:", b"retry:")

# Counts a refused answer (upstream, reason) and returns the error to raise.
Refuse = Callable[[str, str, UpstreamError], UpstreamError]


async def sse_events(
    name: str, cfg: UpstreamConfig, resp: aiohttp.ClientResponse, redactor: Redactor
) -> AsyncIterator[bytes]:
    """Complete SSE events from an upstream response, as they arrive."""
    buffer = bytearray()
    pending = bytearray()  # bytes after the last newline seen
    try:
        # Lines are split here, not with ``resp.content.readline()``: its line limit (512 KiB in
        # aiohttp 3.14) raises a non-``ClientError`` on one large chunk (a big tool-call argument).
        async for data in resp.content.iter_any():
            searched = len(pending)  # the carried-over tail holds no newline
            pending += data
            for line in _take_lines(pending, searched):
                if line in (b"\n", b"\r\n"):
                    if buffer:
                        yield redactor.raw(bytes(buffer) + b"\n")
                        buffer.clear()
                    continue
                if line.startswith(b":"):
                    continue  # upstream keep-alive comments are the proxy's own business
                buffer += _field_line(line)
            if len(buffer) + len(pending) > _MAX_EVENT_BYTES:
                raise UpstreamError(
                    f"upstream {name!r} sent an SSE event over {_MAX_EVENT_BYTES} bytes",
                    upstream=name,
                )
        if pending and not pending.startswith(b":"):
            buffer += _field_line(bytes(pending))
        if buffer:
            yield redactor.raw(bytes(buffer) + b"\n")
    except TimeoutError:
        raise UpstreamTimeoutError(
            f"upstream {name!r} stalled for {cfg.timeout_s:g} s mid-stream", upstream=name
        ) from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(
            f"upstream {name!r} dropped the stream: {type(exc).__name__}", upstream=name
        ) from None
    finally:
        resp.close()


def too_large(name: str, limit: int) -> UpstreamError:
    return UpstreamError(
        f"upstream {name!r} sent more than {limit} bytes (upstreams.{name}.max_response_bytes)",
        upstream=name,
        code="upstream_response_too_large",
    )


def malformed_event(event: bytes) -> str | None:
    """Why ``event`` is not an OpenAI stream event (None when it is one).

    Events are ``data: <JSON object>`` or ``data: [DONE]`` (other SSE fields are allowed); an
    SDK client fails on anything else, so the proxy must not forward it.
    """
    data = b""
    for line in event.splitlines():
        if not line:
            continue
        if not line.startswith(_SSE_FIELDS):
            return f"a line that is not an SSE field ({line[:40]!r})"
        if line.startswith(b"data: "):
            data += line[6:]
    if not data or data == b"[DONE]":
        return None
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return f"a data line that is not JSON ({data[:40]!r})"
    if not isinstance(payload, dict):
        return "a data line that is not a JSON object"
    return None


async def checked_events(
    name: str, cfg: UpstreamConfig, events: AsyncIterator[bytes], refuse: Refuse
) -> AsyncIterator[bytes]:
    """``events``, each validated, and at most ``max_response_bytes`` of them in all."""
    total = 0
    async for event in events:
        total += len(event)
        if total > cfg.max_response_bytes:
            raise refuse(name, "too_large", too_large(name, cfg.max_response_bytes))
        problem = malformed_event(event)
        if problem is not None:
            error = UpstreamError(
                f"upstream {name!r} sent a malformed stream: {problem}",
                upstream=name,
                code="upstream_malformed_stream",
            )
            raise refuse(name, "malformed_stream", error)
        yield event


def _take_lines(pending: bytearray, searched: int) -> list[bytes]:
    """Remove and return the complete lines (with their newline) at the start of ``pending``."""
    lines: list[bytes] = []
    start = 0
    while (end := pending.find(b"\n", max(start, searched))) >= 0:
        lines.append(bytes(pending[start : end + 1]))
        start = end + 1
    del pending[:start]
    return lines


def _field_line(line: bytes) -> bytes:
    """One SSE field line, ``\\n``-terminated, with ``data:`` spelled as clients expect it."""
    if line.startswith(b"data:") and not line.startswith(b"data: "):
        line = b"data: " + line[5:]  # the space is optional in SSE; downstream checks expect it
    return line.rstrip(b"\r\n") + b"\n"
