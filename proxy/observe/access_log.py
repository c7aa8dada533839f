"""Request ids and the access log: one JSON line per request (logger ``adaptive_proxy.access``).

The outermost middleware (:mod:`proxy.http.access_middleware`) gives each request a
:class:`RequestRecord` (the incoming ``x-request-id`` when it is sane, else a new one);
handlers fill in what they learn (policy, arm, samples, cache, tokens, cost); when the request
ends the middleware books the client's spend and hands the line to the app's
:class:`AccessLog`, which logs the lines of one event-loop turn together at the start of the
next: after the responses of that turn went out, never dropping one. Message content is logged
only with ``server.access_log.include_messages``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("adaptive_proxy.access")

REQUEST_ID_HEADER = "x-request-id"
# An incoming id is echoed into headers and logs: printable, no spaces, bounded.
_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# Probes and the scraper would drown the log.
_QUIET_PREFIXES = ("/health/", "/metrics")


@dataclass(slots=True)
class RequestRecord:
    """What the access log says about one request; handlers fill it in as they go."""

    request_id: str
    started_s: float
    model: str | None = None
    policy: str | None = None
    arm: str | None = None
    n: int | None = None
    choices: int | None = None
    cache: str | None = None
    upstream: str | None = None
    fallback_upstream: str | None = None
    upstream_latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float = 0.0
    messages: Any = None

    def line(self, request: web.Request, status: int, key_name: str | None) -> dict[str, Any]:
        """The JSON object of the access-log line."""
        out: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "request_id": self.request_id,
            "method": request.method,
            "path": request.path,
            "status": status,
            "latency_ms": round((time.perf_counter() - self.started_s) * 1000, 3),
            "key": key_name,
            "model": self.model,
            "policy": self.policy,
            "arm": self.arm,
            "n": self.n,
            "choices": self.choices,
            "cache": self.cache,
            "upstream": self.upstream,
            "fallback_upstream": self.fallback_upstream,
            "upstream_latency_ms": self.upstream_latency_ms,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 8),
        }
        if self.messages is not None:
            out["messages"] = self.messages
        return out


def request_id_of(request: web.Request) -> str:
    """The incoming ``x-request-id`` when it is sane, else a fresh one."""
    incoming = request.headers.get(REQUEST_ID_HEADER)
    if incoming and _SANE_ID.fullmatch(incoming):
        return incoming
    # 32 random hex digits, as uuid4().hex has, at a third of its cost (this runs per request).
    return os.urandom(16).hex()


class AccessLog:
    """The access lines of the requests that ended in one event-loop turn, logged together.

    A line is built when its request ends (its latency and status are final then) and logged
    from a callback of the next loop turn, after the turn's responses were written: the
    logging handlers' work (formatting, the write to the log) is not on any request's path.
    :meth:`flush` logs what is left; the app calls it when it stops.
    """

    def __init__(self, logger: logging.Logger = log) -> None:
        self._logger = logger
        self._lines: list[str] = []
        self._scheduled = False

    def add(self, line: str) -> None:
        """Queue one line; it is logged at the start of the next loop turn."""
        self._lines.append(line)
        if not self._scheduled:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a caller outside the server): log it now
                self.flush()
                return
            self._scheduled = True

    def flush(self) -> None:
        """Log every queued line, in the order the requests ended."""
        lines, self._lines = self._lines, []
        self._scheduled = False
        for line in lines:
            self._logger.info(line)


def write_access_line(
    request: web.Request,
    record: RequestRecord,
    status: int,
    key: str | None,
    access_log: AccessLog | None = None,
) -> None:
    """Log the request's line (skipping probes and the scraper), through ``access_log`` when
    given (batched off the request's path), else at once."""
    if request.path.startswith(_QUIET_PREFIXES) or not log.isEnabledFor(logging.INFO):
        return
    line = orjson.dumps(record.line(request, status, key)).decode()
    if access_log is None:
        log.info(line)
    else:
        access_log.add(line)
