"""Online budget controller: the proxy finds the price of compute λ from an operator's target.

Targets (``target_kind``):

* ``fraction_expensive`` — share of requests sent to arms flagged expensive (e.g. ``0.3``);
* ``mean_samples`` — mean samples per request (e.g. ``3``);
* ``usd_per_hour`` — spend rate; converted to a per-request cost target with the observed
  request rate.

How λ is found. The controller keeps a sliding window of recent *decision problems* — each
request's per-arm expected rewards and costs, as the policy saw them — and solves, by bisection
on λ (:mod:`proxy.policies.budget.solve`), for the smallest λ at which re-deciding the whole
window would meet the target (the window's mean metric is non-increasing in λ as long as an
arm's metric grows with its cost).
Because it re-solves on the window rather than nudging λ step by step, it does not oscillate
and it follows a traffic shift as soon as the window holds the new traffic. A slow, leaky,
clamped integral of the *realised* error (what actually happened: fallbacks, failures, cache
hits) shifts the effective target by at most ``max_correction`` (relative). It integrates the
gap between what each request *realised* and what its chosen arm *planned*, not the raw 0/1
outcome, so it is silent (no sampling noise) when execution matches the plan and corrects only
systematic gaps. For ``usd_per_hour`` the problems' ``costs`` must be in USD.

Shared state. Without Redis every process keeps its own window. With a ``redis.asyncio.Redis``
client the window is a capped Redis list, the realised counters are hashes in time buckets with
an expiry, and the integral is one key, all updated by one Lua script per request, so N replicas
keep ONE budget (each solves the same window, hence the same λ). Keys share a hash tag, so the
script also works on Redis Cluster. A Redis failure falls back to the local mirror of the state
with one warning per outage; the controller never raises into a request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from proxy.policies.allocation import DecisionProblem
from proxy.policies.budget.solve import TARGET_KINDS, TargetKind, arm_metric, solve_lambda
from proxy.policies.budget.store import RedisBudgetStore

log = logging.getLogger(__name__)


def _encode(problem: DecisionProblem) -> bytes:
    return orjson.dumps(
        [problem.expected_rewards, problem.costs, problem.samples, problem.expensive]
    )


def _decode(raw: bytes | str) -> DecisionProblem:
    r, c, s, e = orjson.loads(raw)
    return DecisionProblem(tuple(r), tuple(c), tuple(s), tuple(bool(x) for x in e))


class _LocalState:
    """The in-process state, also the mirror used while Redis is unreachable."""

    def __init__(self, window: int) -> None:
        self.window: deque[DecisionProblem] = deque(maxlen=window)
        self.buckets: dict[int, list[float]] = {}
        self.integral = 0.0


class BudgetController:
    """Steers λ so the running average meets ``target`` (see the module docstring)."""

    def __init__(
        self,
        target_kind: TargetKind,
        target: float,
        *,
        redis: Any | None = None,
        key_prefix: str = "adaptive:budget:default",
        window: int = 1000,
        half_life: float | None = None,
        min_window: int = 20,
        initial_lambda: float = 0.0,
        recompute_every: int = 16,
        recompute_interval_s: float = 5.0,
        correction_rate: float = 0.002,
        max_correction: float = 0.2,
        bucket_s: float = 10.0,
        rate_window_s: float = 300.0,
        redis_retry_s: float = 5.0,
        redis_timeout_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if target_kind not in TARGET_KINDS:
            raise ValueError(f"unknown budget target {target_kind!r}; one of {TARGET_KINDS}")
        if target < 0 or not math.isfinite(target):
            raise ValueError(f"budget target must be finite and >= 0, got {target!r}")
        self.target_kind: TargetKind = target_kind
        self.target = float(target)
        self._store = (
            RedisBudgetStore(redis, timeout_s=redis_timeout_s, retry_s=redis_retry_s)
            if redis is not None
            else None
        )
        self._keys = (
            f"{{{key_prefix}}}:window",
            f"{{{key_prefix}}}:bucket:",
            f"{{{key_prefix}}}:integral",
        )
        self._window_size = window
        # Recent traffic counts more, so a shift moves λ within about a half-life.
        self._half_life = half_life if half_life is not None else window / 8
        self._min_window = min_window
        self._lambda = float(initial_lambda)
        self._recompute_every = recompute_every
        self._recompute_interval_s = recompute_interval_s
        self._rate, self._max_correction = correction_rate, max_correction
        self._bucket_s, self._rate_window_s = bucket_s, rate_window_s
        self._clock = clock
        self._local = _LocalState(window)
        self._decoded: dict[bytes, DecisionProblem] = {}
        self._since_recompute = 0
        self._last_recompute = -math.inf
        self._solved = False
        self._lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._last: dict[str, float | int | None] = {
            "window": 0,
            "realised": None,
            "correction": 0.0,
            "target_per_request": None,
            "requests_per_hour": None,
        }

    # --- observation ---------------------------------------------------------------------

    def _bucket(self, now: float) -> int:
        return int(now // self._bucket_s)

    def _target_per_request(self, requests_per_hour: float | None) -> float | None:
        if self.target_kind != "usd_per_hour":
            return self.target
        if not requests_per_hour:
            return None
        return self.target / requests_per_hour

    async def observe(
        self,
        problem: DecisionProblem,
        chosen: int,
        *,
        cost_usd: float,
        n_samples: int,
        expensive: bool,
    ) -> None:
        """Record one request: the problem the policy solved and what was actually spent."""
        realised = {
            "fraction_expensive": 1.0 if expensive else 0.0,
            "mean_samples": float(n_samples),
            "usd_per_hour": float(cost_usd),
        }
        arm_metrics = arm_metric(problem, self.target_kind)
        # An unknown arm (e.g. a fallback outside the problem) counts as planned: no correction.
        planned = arm_metrics[chosen] if 0 <= chosen < len(arm_metrics) else None
        target = self._last["target_per_request"]
        error = 0.0
        if isinstance(target, float) and planned is not None:
            # Relative gap realised - planned; bounded so one odd request cannot saturate it.
            error = (realised[self.target_kind] - planned) / max(target, 1e-12)
            error = min(max(error, -100.0), 100.0)
        now = self._clock()
        local = self._local
        local.window.append(problem)
        bucket = local.buckets.setdefault(self._bucket(now), [0.0, 0.0, 0.0, 0.0])
        for k, v in enumerate((1.0, realised["fraction_expensive"], float(n_samples), cost_usd)):
            bucket[k] += v
        oldest = self._bucket(now - self._rate_window_s)
        for key in [k for k in local.buckets if k < oldest]:
            del local.buckets[key]
        integral = (1 - self._rate) * local.integral + self._rate * error
        local.integral = min(max(integral, -self._max_correction), self._max_correction)
        self._since_recompute += 1
        if self._store is not None:
            self._store_observation(problem, now, expensive, n_samples, cost_usd, error)

    def _store_observation(
        self,
        problem: DecisionProblem,
        now: float,
        expensive: bool,
        n_samples: int,
        cost_usd: float,
        error: float,
    ) -> None:
        assert self._store is not None
        ttl_s = math.ceil(self._rate_window_s + 2 * self._bucket_s)
        keys = [self._keys[0], f"{self._keys[1]}{self._bucket(now)}", self._keys[2]]
        args = [
            _encode(problem),
            self._window_size,
            int(expensive),
            n_samples,
            repr(float(cost_usd)),
            ttl_s,
            repr(error),
            self._rate,
            self._rate,
            self._max_correction,
        ]
        self._store.add(keys, args)

    async def flush(self) -> None:
        """Wait for the background work: observations written to Redis, a re-solve running."""
        if self._refresher is not None and not self._refresher.done():
            await asyncio.shield(self._refresher)
        if self._store is not None:
            await self._store.flush()

    # --- reading state -------------------------------------------------------------------

    async def _read_state(self) -> tuple[list[DecisionProblem], list[list[float]], float]:
        now = self._clock()
        first, last = self._bucket(now - self._rate_window_s), self._bucket(now)
        if self._store is not None:
            shared = await self._store.read(self._keys, self._window_size, range(first, last + 1))
            if shared is not None:
                raw_window, raw_integral, raw_buckets = shared
                # LPUSH keeps the newest first; the solver wants oldest first.
                window = await asyncio.to_thread(self._decode_window, raw_window)
                buckets = [
                    [float(h.get(k, 0.0)) for k in (b"n", b"e", b"s", b"c")] + [float(b)]
                    for b, h in zip(range(first, last + 1), raw_buckets, strict=True)
                    if h
                ]
                return window, buckets, float(raw_integral or 0.0)
        local = self._local
        buckets = [[*v, float(k)] for k, v in sorted(local.buckets.items()) if k >= first]
        return list(local.window), buckets, local.integral

    def _decode_window(self, raw_window: list[bytes]) -> list[DecisionProblem]:
        """Decode the shared window (newest first in Redis) oldest first, reusing past decodes."""
        cache = self._decoded
        window = [cache.get(raw) or _decode(raw) for raw in reversed(raw_window)]
        self._decoded = dict(zip(raw_window, reversed(window), strict=True))
        return window

    def _rates(self, buckets: list[list[float]]) -> tuple[float | None, float | None]:
        """``(realised metric, requests per hour)`` over the rate window."""
        count = sum(b[0] for b in buckets)
        if count <= 0:
            return None, None
        now = self._clock()
        oldest_start = min(b[4] for b in buckets) * self._bucket_s
        span_s = min(max(now - oldest_start, self._bucket_s), self._rate_window_s)
        requests_per_hour = count * 3600.0 / span_s
        if self.target_kind == "fraction_expensive":
            realised = sum(b[1] for b in buckets) / count
        elif self.target_kind == "mean_samples":
            realised = sum(b[2] for b in buckets) / count
        else:
            realised = sum(b[3] for b in buckets) * 3600.0 / span_s
        return realised, requests_per_hour

    async def refresh(self) -> float:
        """Re-solve λ from the current (shared) state now, and return it."""
        async with self._lock:
            window, buckets, integral = await self._read_state()
            realised, requests_per_hour = self._rates(buckets)
            target = self._target_per_request(requests_per_hour)
            if target is not None and len(window) >= self._min_window:
                effective = target * (1.0 - integral)
                self._lambda = await asyncio.to_thread(
                    functools.partial(solve_lambda, half_life=self._half_life),
                    window,
                    self.target_kind,
                    effective,
                )
                self._solved = True
            self._last = {
                "window": len(window),
                "realised": realised,
                "correction": integral,
                "target_per_request": target,
                "requests_per_hour": requests_per_hour,
            }
            self._since_recompute = 0
            self._last_recompute = time.monotonic()
            return self._lambda

    async def current_lambda(self) -> float:
        """The λ to decide with: cached, re-solved every k requests or t seconds."""
        stale = (
            self._since_recompute >= self._recompute_every
            or time.monotonic() - self._last_recompute >= self._recompute_interval_s
            # Warming up, λ is the initial one: solve as soon as the window is long enough,
            # not up to ``recompute_every`` requests later.
            or (not self._solved and self._since_recompute > 0)
        )
        if stale and not self._lock.locked():
            if self._store is None or self._last_recompute == -math.inf:
                # Local state (no I/O), or the first λ of this process: solve inline, so a new
                # replica decides with the shared λ from its first request.
                await self._refresh_quietly()
            elif self._refresher is None or self._refresher.done():
                # Reading the shared window takes a round trip and the solve milliseconds: in
                # the background, so no request waits for them (the next ones get the new λ).
                self._refresher = asyncio.create_task(self._refresh_quietly())
        return self._lambda

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception:  # a solver bug must not fail requests; keep the last λ
            log.exception("budget controller: recomputing lambda failed")

    async def snapshot(self) -> dict[str, Any]:
        """Current λ, target, realised rate and window size (for ``decide`` and ``/metrics``)."""
        return {
            "lambda": self._lambda,
            "target": self.target,
            "target_kind": self.target_kind,
            "realised": self._last["realised"],
            "window": self._last["window"],
            "correction": self._last["correction"],
            "target_per_request": self._last["target_per_request"],
            "requests_per_hour": self._last["requests_per_hour"],
            "shared": self._store is not None and not self._store.outage,
        }
