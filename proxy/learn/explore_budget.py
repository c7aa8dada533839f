"""The exploration budget: what background runs of the arm not chosen cost today.

``learning.explore_budget_usd_per_day`` caps the spend of all exploration together, per UTC day.
The counter is a Redis hash per day (``<prefix>:<YYYY-MM-DD>``, one field per policy, kept two
days) when the proxy has Redis, so every replica spends one budget; otherwise it lives in the
process. A Redis that cannot be read counts as an exhausted budget: exploration is optional, so
it stops rather than spend blind.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("proxy.learn")
_KEEP_S = 2 * 86_400


def utc_day(unix_s: float) -> str:
    """The UTC day of ``unix_s`` as ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(unix_s, tz=dt.UTC).strftime("%Y-%m-%d")


class ExploreBudget:
    """Today's exploration spend, per policy, against one daily cap."""

    def __init__(
        self,
        budget_usd_per_day: float,
        *,
        redis: Any = None,
        prefix: str = "adaptive:explore:spend",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.budget_usd_per_day = budget_usd_per_day
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        # In process: {day: {policy: usd}}; only today's entry is kept.
        self._local: dict[str, dict[str, float]] = {}
        self._outage = False

    def _key(self, day: str) -> str:
        return f"{self._prefix}:{day}"

    async def spent(self) -> dict[str, float]:
        """Today's spend by policy; raises when Redis cannot be read."""
        day = utc_day(self._clock())
        if self._redis is None:
            return dict(self._local.get(day, {}))
        raw = await self._redis.hgetall(self._key(day))
        return {_text(k): float(v) for k, v in raw.items()}

    async def allows(self, expected_cost_usd: float) -> bool:
        """Whether a run expected to cost ``expected_cost_usd`` fits in today's budget."""
        try:
            total = sum((await self.spent()).values())
        except Exception as exc:
            self._warn(exc)
            return False
        self._recovered()
        return total + expected_cost_usd <= self.budget_usd_per_day

    async def add(self, policy: str, cost_usd: float) -> None:
        """Book a finished run's cost to today's spend of ``policy``."""
        day = utc_day(self._clock())
        if self._redis is None:
            self._local = {day: self._local.get(day, {})}
            today = self._local[day]
            today[policy] = today.get(policy, 0.0) + cost_usd
            return
        try:
            key = self._key(day)
            await self._redis.hincrbyfloat(key, policy, cost_usd)
            await self._redis.expire(key, _KEEP_S)
        except Exception as exc:
            self._warn(exc)

    async def spent_usd(self, policy: str) -> float:
        """Today's spend of ``policy`` (0 when Redis cannot be read)."""
        try:
            return (await self.spent()).get(policy, 0.0)
        except Exception:
            return 0.0

    def _warn(self, exc: BaseException) -> None:
        if not self._outage:
            self._outage = True
            log.warning("exploration: its spend counter is unavailable (%s); not exploring", exc)

    def _recovered(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("exploration: spend counter reachable again")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
