"""Redis clients for the decision cache and the budget controllers, built one way.

A pooled connection can be stale (Redis restarted, a NAT dropped it) and the first command of a
new connection can be slow on a loaded machine; neither is an outage. So every call site retries
a failed operation once, on a fresh connection, before it declares Redis unavailable, and pooled
connections idle for ``health_check_interval_s`` are PINGed before reuse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


def make_redis(
    url: str,
    *,
    timeout_s: float,
    max_connections: int,
    health_check_interval_s: float,
) -> Any:
    """A ``redis.asyncio.Redis`` with bounded timeouts, a sized pool and health checks."""
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # A blocking pool: past ``max_connections`` a call waits for a free connection (bounded by
    # the caller's timeout) instead of failing with "Too many connections".
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        # One immediate retry inside redis-py replaces a connection that died with a restarted
        # server; the caller's timeout still bounds the total.
        retry=Retry(NoBackoff(), 1),
        health_check_interval=health_check_interval_s,
    )
    return Redis.from_pool(pool)


async def call_with_fresh_retry(
    client: Any, operation: Callable[[], Awaitable[_T]], *, timeout_s: float, retry: bool
) -> _T:
    """``operation()`` within ``timeout_s``; if it fails and ``retry``, drop the idle pooled
    connections and try once more (so a stale connection or one slow connect is not an outage).

    Raises the second failure (or the first when not retrying).
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await operation()
    except Exception:
        if not retry:
            raise
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        # Idle connections may all be stale; connections in use by other calls are left alone.
        await pool.disconnect(inuse_connections=False)
    async with asyncio.timeout(timeout_s):
        return await operation()
