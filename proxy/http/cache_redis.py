"""The Redis client that the app's shared state (budgets, costs, stats, response homes) uses."""

from __future__ import annotations

from typing import Any

from proxy.config.schema import CacheConfig
from proxy.wire.redis_client import make_redis


def cache_redis(cache: CacheConfig, *, min_timeout_s: float = 0.2) -> Any | None:
    """A client on ``cache.redis_url`` with the cache's pool settings; None without a URL.

    Its timeout is ``cache.timeout_s`` raised to ``min_timeout_s``: the decision cache's timeout
    is tuned for a lookup on the request path and can be too short for these writes.
    """
    if not cache.redis_url:
        return None
    return make_redis(
        cache.redis_url,
        timeout_s=max(cache.timeout_s, min_timeout_s),
        max_connections=cache.max_connections,
        health_check_interval_s=cache.health_check_interval_s,
    )
