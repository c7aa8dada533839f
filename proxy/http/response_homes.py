"""Where each response id lives, so that a ``previous_response_id`` follow-up finds it.

A response created by an upstream that serves the Responses API natively lives on that upstream:
its id maps to the upstream's name, and a follow-up naming it is sent there whatever the policy
would decide. A response the proxy assembled from chat completions (best-of-k, cascades, chat
upstreams) lives nowhere upstream: with ``store`` not false its id maps to the whole
conversation (the chat messages and the answer), and a follow-up runs the policy again on that
conversation plus its new input.

With ``cache.redis_url`` the map is in Redis (``adaptive:response:<id>``, kept 30 days, as
OpenAI keeps stored responses), shared by every replica; otherwise in the process, bounded to
the newest ``max_entries`` ids. A Redis that cannot be read answers "unknown": the follow-up
then goes where the policy decides, and the id is that upstream's to resolve (or refuse).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from proxy.http.cache_redis import cache_redis
from proxy.http.state import CONFIG

log = logging.getLogger("adaptive_proxy.responses")

KEEP_S = 30 * 86_400
_PREFIX = "adaptive:response:"
DEFAULT_MAX_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class ResponseHome:
    """The upstream that holds a response, or the conversation the proxy kept for it."""

    upstream: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None

    def encode(self) -> bytes:
        """JSON for Redis."""
        messages = list(self.messages) if self.messages is not None else None
        return orjson.dumps({"upstream": self.upstream, "messages": messages})

    @classmethod
    def decode(cls, raw: bytes | str) -> ResponseHome:
        """Inverse of :meth:`encode`."""
        data = orjson.loads(raw)
        messages = data.get("messages")
        return cls(
            upstream=data.get("upstream"),
            messages=tuple(messages) if messages is not None else None,
        )


class ResponseHomes:
    """Response id → :class:`ResponseHome`, in Redis or in a bounded in-process map."""

    def __init__(
        self, *, redis: Any = None, timeout_s: float = 0.2, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self._max_entries = max_entries
        self._local: OrderedDict[str, ResponseHome] = OrderedDict()

    @property
    def backend(self) -> str:
        """``redis`` or ``memory``."""
        return "redis" if self._redis is not None else "memory"

    async def put(self, response_id: str, home: ResponseHome) -> None:
        """Remember where ``response_id`` lives (a Redis failure is logged, not raised)."""
        if self._redis is None:
            self._local[response_id] = home
            self._local.move_to_end(response_id)
            while len(self._local) > self._max_entries:
                self._local.popitem(last=False)
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.set(_PREFIX + response_id, home.encode(), ex=KEEP_S)
        except Exception as exc:
            log.warning("cannot record response %s in Redis: %s", response_id, exc)

    async def get(self, response_id: str) -> ResponseHome | None:
        """Where ``response_id`` lives; ``None`` when unknown (or Redis cannot say)."""
        if self._redis is None:
            return self._local.get(response_id)
        try:
            async with asyncio.timeout(self._timeout_s):
                raw = await self._redis.get(_PREFIX + response_id)
        except Exception as exc:
            log.warning("cannot read response %s from Redis: %s", response_id, exc)
            return None
        return ResponseHome.decode(raw) if raw is not None else None

    async def aclose(self) -> None:
        """Close the Redis client, if any."""
        if self._redis is not None:
            await self._redis.aclose()


RESPONSE_HOMES = web.AppKey("adaptive_response_homes", ResponseHomes)


async def response_homes_ctx(app: web.Application) -> AsyncIterator[None]:
    """The app's :class:`ResponseHomes`: Redis with ``cache.redis_url``, else in process."""
    spec = app[CONFIG].snapshot.config.cache
    redis = cache_redis(spec)
    homes = ResponseHomes(redis=redis, timeout_s=max(spec.timeout_s, 0.2))
    app[RESPONSE_HOMES] = homes
    try:
        yield
    finally:
        await homes.aclose()
