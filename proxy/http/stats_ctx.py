"""The dashboard's aggregates as an app resource: the recorder, its store, its flush task.

:func:`stats_ctx` (one ``cleanup_ctx``) creates the :class:`StatsRecorder` the chat handler
appends to, a store (Redis per replica with ``cache.redis_url``, else in process) and a task
that flushes every ``FLUSH_INTERVAL_S``. It also knows, per policy type, which arms are the
obvious alternatives the dashboard compares against.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from proxy.config.reload import ConfigHolder
from proxy.http.cache_redis import cache_redis
from proxy.http.state import CONFIG, COSTS, METRICS
from proxy.observe.stats import Alternatives, StatsRecorder, StatsStore
from proxy.observe.stats_store import MemoryStatsStore, RedisStatsStore
from proxy.policies.base import BasePolicy
from proxy.policies.best_of_k import BestOfKPolicy
from proxy.policies.cascade import CascadePolicy
from proxy.policies.ladder import LadderPolicy
from proxy.policies.route import RoutePolicy
from proxy.upstream.pricing import CostModel

log = logging.getLogger("adaptive_proxy.stats")

SLOT_S = 5
# Each replica's page flushes on demand; the task keeps the other replicas' pages current.
FLUSH_INTERVAL_S = 2.0
# The longest window the stats endpoint serves, and how long slots are kept.
MAX_WINDOW_S = 6 * 3600

STATS = web.AppKey("adaptive_stats", StatsRecorder)
STATS_STORE = web.AppKey("adaptive_stats_store", StatsStore)

# (label, upstream, samples) of one arm a policy could always take.
Arm = tuple[str, str, int]


def fixed_arms(policy: BasePolicy) -> list[Arm]:
    """The arms a policy chooses among, for the always-this-arm alternatives (best_of_k:
    ``n_min`` and ``n_max`` samples)."""
    if isinstance(policy, RoutePolicy):
        return [
            ("cheap", policy.cheap_target.upstream, 1),
            ("expensive", policy.expensive_target.upstream, 1),
        ]
    if isinstance(policy, BestOfKPolicy):
        return [
            (f"n={policy.n_min}", policy.upstream, policy.n_min),
            (f"n={policy.n_max}", policy.upstream, policy.n_max),
        ]
    if isinstance(policy, CascadePolicy):
        first, last = policy.stages[0], policy.stages[-1]
        return [(first.label, first.upstream, first.n), (last.label, last.upstream, 1)]
    if isinstance(policy, LadderPolicy):
        return [(a.name, a.upstream, a.n) for a in policy.arms]
    return []


def _arm_price(costs: CostModel, arm: Arm) -> float:
    prices = costs.prices(arm[1])
    return arm[2] * (prices.in_per_mtok_usd + prices.out_per_mtok_usd)


def _extremes(costs: CostModel, policy: BasePolicy) -> tuple[Arm, Arm] | None:
    arms = fixed_arms(policy)
    if not arms:
        return None
    try:
        ordered = sorted(arms, key=lambda arm: _arm_price(costs, arm))
    except KeyError:
        return None  # an upstream renamed by a reload not applied yet
    return ordered[0], ordered[-1]


def policy_info(holder: ConfigHolder, costs: CostModel) -> dict[str, dict[str, Any]]:
    """Per policy: its type, ``n_max`` and the arms the alternatives stand for."""
    out: dict[str, dict[str, Any]] = {}
    for name, policy in holder.snapshot.config.policies.items():
        extremes = _extremes(costs, policy)
        out[name] = {
            "type": policy.type,
            "n_max": getattr(policy, "n_max", None),
            "cheapest_arm": extremes[0][0] if extremes else None,
            "most_expensive_arm": extremes[1][0] if extremes else None,
        }
    return out


def alternatives_of(holder: ConfigHolder, costs: CostModel) -> Alternatives:
    """What always the cheapest and always the most expensive arm would have cost a request.

    best_of_k: the request's cost per sample times ``n_min`` and ``n_max``. Other policies: the
    request's tokens per call priced at each extreme arm's upstream, times its samples. A
    request without token counts is not compared.
    """

    # Per policy, what its extremes cost per call, worked out once per config generation.
    plans: dict[str, tuple[Any, ...] | None] = {}
    generation = [-1]

    def plan(name: str) -> tuple[Any, ...] | None:
        policy = holder.snapshot.config.policies.get(name)
        if policy is None:
            return None
        if isinstance(policy, BestOfKPolicy):
            return ("per_sample", policy.n_min, policy.n_max)
        extremes = _extremes(costs, policy)
        if extremes is None:
            return None
        (_, low_upstream, low_n), (_, high_upstream, high_n) = extremes
        return ("tokens", low_n, costs.prices(low_upstream), high_n, costs.prices(high_upstream))

    def alternatives(
        name: str, arm: str, n: int, cost_usd: float, prompt: int | None, completion: int | None
    ) -> tuple[float, float] | None:
        snapshot = holder.snapshot
        if snapshot.generation != generation[0]:
            plans.clear()
            generation[0] = snapshot.generation
        if name not in plans:
            plans[name] = plan(name)
        found = plans[name]
        if found is None:
            return None
        if found[0] == "per_sample":
            per_sample = cost_usd / max(n, 1)
            return per_sample * found[1], per_sample * found[2]
        if prompt is None or completion is None:
            return None
        calls = max(n, 1)
        per_prompt, per_completion = round(prompt / calls), round(completion / calls)
        _, low_n, low, high_n, high = found
        return (
            low_n * low.cost_usd(per_prompt, per_completion),
            high_n * high.cost_usd(per_prompt, per_completion),
        )

    return alternatives


async def _flush_forever(recorder: StatsRecorder, store: StatsStore) -> None:
    failing = False
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        try:
            await recorder.flush(store)
        except Exception as exc:  # Redis down: the dashboard lags, requests are unaffected
            if not failing:
                log.warning("stats flush failed (%s: %s)", type(exc).__name__, exc)
            failing = True
        else:
            if failing:
                log.info("stats flush works again")
            failing = False


async def stats_ctx(app: web.Application) -> AsyncIterator[None]:
    """The recorder, its store and the flush task, for the life of the app."""
    holder, costs = app[CONFIG], app[COSTS]
    recorder = StatsRecorder(app[METRICS].registry, alternatives_of(holder, costs), slot_s=SLOT_S)
    spec = holder.snapshot.config.cache
    store: StatsStore
    client = cache_redis(spec, min_timeout_s=0.5)
    if client is not None:
        store = RedisStatsStore(client, MAX_WINDOW_S)
    else:
        store = MemoryStatsStore(MAX_WINDOW_S)
    app[STATS] = recorder
    app[STATS_STORE] = store
    task = asyncio.create_task(_flush_forever(recorder, store), name="adaptive-proxy-stats")
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        try:
            await recorder.flush(store)  # the last requests reach the other replicas' pages
        except Exception as exc:
            log.warning("last stats flush failed (%s: %s)", type(exc).__name__, exc)
        await store.aclose()
