"""Realised answer lengths per arm, pooled through Redis so every replica prices arms alike.

An arm's expected cost is its prompt plus the mean completion (reasoning included) its answers
realised. In one process :class:`~proxy.upstream.pricing.CostModel` keeps that mean itself; with
``cache.redis_url`` every replica adds its answers to one Redis hash (a sum and a count per arm)
and reads the pooled running means back, so a replica that just started prices an effort arm
from the fleet's experience. Writes are queued and sent by one background task, never inline on
a request; Redis trouble is logged once and the local means keep serving.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from proxy.wire.redis_client import call_with_fresh_retry
from proxy.wire.write_behind import WriteBehind

log = logging.getLogger("adaptive_proxy.costs")

#: The Redis hash holding ``<arm>|sum`` (completion tokens) and ``<arm>|count`` (answers).
ARM_USAGE_KEY = "adaptive:arm_usage"


def pooled_means(raw: dict[Any, Any]) -> dict[str, float]:
    """Running mean completion tokens per arm from the hash's ``|sum`` and ``|count`` fields."""
    fields = {(k.decode() if isinstance(k, bytes) else str(k)): float(v) for k, v in raw.items()}
    means: dict[str, float] = {}
    for field, count in fields.items():
        if not field.endswith("|count") or count <= 0:
            continue
        arm = field.removesuffix("|count")
        total = fields.get(f"{arm}|sum")
        if total is not None:
            means[arm] = total / count
    return means


class SharedArmUsage:
    """Queues answers for Redis and hands the pooled means to ``on_means``."""

    def __init__(
        self, redis: Any, on_means: Callable[[dict[str, float]], None], *, timeout_s: float
    ) -> None:
        self._redis = redis
        self._on_means = on_means
        self._timeout_s = timeout_s
        self._writes: WriteBehind[tuple[str, float, int]] = WriteBehind(self._write_pending)
        self._outage = False

    def add(self, arm: str, completion_tokens: float, answers: int) -> None:
        """Queue ``answers`` answers of ``arm`` totalling ``completion_tokens``."""
        self._writes.add((arm, completion_tokens, answers))

    def load(self) -> None:
        """Read the pooled means now (in the background), e.g. when a replica starts."""
        self._writes.start()

    async def flush(self) -> None:
        """Wait until every queued answer is written and the means read back."""
        await self._writes.flush()

    async def _write_pending(self) -> None:
        while True:
            batch = self._writes.take()
            try:
                raw = await call_with_fresh_retry(
                    self._redis,
                    functools.partial(self._exchange, batch),
                    timeout_s=self._timeout_s,
                    retry=not self._outage,
                )
            except Exception as exc:  # Redis trouble must never fail a request
                if not self._outage:
                    self._outage = True
                    log.warning("arm costs: Redis unavailable (%s); using local means", exc)
            else:
                if self._outage:
                    self._outage = False
                    log.info("arm costs: Redis reachable again; sharing means")
                self._on_means(pooled_means(raw))
            if not self._writes.pending:
                return

    async def _exchange(self, batch: list[tuple[str, float, int]]) -> dict[Any, Any]:
        async with self._redis.pipeline(transaction=True) as pipe:
            for arm, tokens, answers in batch:
                pipe.hincrbyfloat(ARM_USAGE_KEY, f"{arm}|sum", tokens)
                pipe.hincrby(ARM_USAGE_KEY, f"{arm}|count", answers)
            pipe.hgetall(ARM_USAGE_KEY)
            results = await pipe.execute()
        raw: dict[Any, Any] = results[-1]
        return raw
