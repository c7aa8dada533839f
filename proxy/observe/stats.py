"""Per-policy aggregates for the dashboard: one append per request, the rest in the background.

The request path calls :meth:`StatsRecorder.record` once per finished chat request (a tuple
appended to a list: no lock, no dict walk). A background task (:meth:`StatsRecorder.flush`,
every ``flush_interval_s``) folds the appended requests into the current time slot of
``slot_s`` seconds, adds what changed in the Prometheus registry since the last flush (decision
cache, fallbacks, upstream latency buckets, sequential stops, cascade escalations and agreement,
client spend,
budget gauges, exploration and learner series) and hands the slot to a :class:`StatsStore`
(Redis per replica, or in process). :mod:`proxy.observe.stats_view` reads slots back into the
``GET /v1/adaptive/stats`` body.

A slot is a JSON-able dict::

    {"p": {policy: {"requests", "errors", "cost_usd", "cheapest_usd", "expensive_usd",
                    "compared", "compared_cost_usd", "samples", "cache_hits",
                    "arms": {arm: n}, "n": {"<n drawn>": requests},
                    "fallbacks": {reason: requests}}},
     "c": {series name: {labels json: delta}},   # counters and histogram buckets
     "g": {series name: {labels json: value}}}   # gauges: the last value seen
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.registry import RestrictedRegistry

# (policy, arm, n drawn, HTTP status, cost, prompt tokens, completion tokens, decision cache
# hit, the predictor fallback's reason)
RequestFacts = tuple[str, str, int, int, float, int | None, int | None, bool, str | None]
# What the cheapest and the most expensive arm would have cost for the same request, from its
# policy, arm, samples drawn, cost paid and tokens; ``None``: the request cannot be compared.
Alternatives = Callable[[str, str, int, float, int | None, int | None], tuple[float, float] | None]
Slot = dict[str, Any]

# Registry series the dashboard reads; everything else in /metrics is left out of the slots.
COUNTER_SERIES = frozenset(
    {
        "adaptive_upstream_seconds_bucket",
        "adaptive_upstream_seconds_count",
        "adaptive_sequential_rounds_sum",
        "adaptive_sequential_rounds_count",
        "adaptive_sequential_stops_total",
        "adaptive_cascade_requests_total",
        "adaptive_cascade_agreement_total",
        "adaptive_client_spend_usd_total",
    }
)
GAUGE_SERIES = frozenset(
    {"adaptive_budget_lambda", "adaptive_budget_target", "adaptive_budget_realised"}
)
# Learning and exploration series are shown as they come, whatever their names.
LEARNER_PREFIXES = ("adaptive_explore_", "adaptive_learn")
# Slots kept while the store is down (an hour of 5-second slots).
MAX_UNWRITTEN_SLOTS = 720
# How often the full registry is read to find learner series registered since (flushes).
RESCAN_EVERY = 30


def labels_key(labels: dict[str, str]) -> str:
    """The JSON text that names a labelled child inside a slot."""
    return orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()


def _tracked(name: str) -> bool:
    return name in COUNTER_SERIES or name.startswith(LEARNER_PREFIXES)


def read_registry(
    registry: CollectorRegistry | RestrictedRegistry,
) -> tuple[dict[tuple[str, str], float], Slot]:
    """The registry's cumulative counters (by name and labels) and its gauges, as a slot part."""
    counters: dict[tuple[str, str], float] = {}
    gauges: Slot = {}
    for metric in registry.collect():
        is_gauge = metric.type == "gauge"
        for sample in metric.samples:
            name = sample.name
            if name.endswith("_created"):
                continue
            if is_gauge and (name in GAUGE_SERIES or name.startswith(LEARNER_PREFIXES)):
                # NaN is a gauge not known yet (a budget before its first request); JSON has
                # no NaN, so the slot leaves it out rather than store a null.
                if math.isfinite(sample.value):
                    gauges.setdefault(name, {})[labels_key(sample.labels)] = sample.value
            elif not is_gauge and _tracked(name):
                counters[(name, labels_key(sample.labels))] = sample.value
    return counters, gauges


def _policy_entry() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "cost_usd": 0.0,
        "cheapest_usd": 0.0,
        "expensive_usd": 0.0,
        "compared": 0,
        "compared_cost_usd": 0.0,
        "samples": 0,
        "cache_hits": 0,
        "arms": {},
        "n": {},
        "fallbacks": {},
    }


def fold_requests(slot: Slot, facts: Iterable[RequestFacts], alternatives: Alternatives) -> None:
    """Add finished requests to a slot's per-policy aggregates."""
    policies = slot.setdefault("p", {})
    for policy, arm, n, status, cost_usd, prompt, completion, cache_hit, fallback in facts:
        entry = policies.get(policy)
        if entry is None:
            entry = policies[policy] = _policy_entry()
        entry["requests"] += 1
        if status >= 400:
            entry["errors"] += 1
        entry["cost_usd"] += cost_usd
        entry["samples"] += n
        entry["arms"][arm] = entry["arms"].get(arm, 0) + 1
        drawn = str(n)
        entry["n"][drawn] = entry["n"].get(drawn, 0) + 1
        if cache_hit:
            entry["cache_hits"] += 1
        if fallback is not None:
            entry["fallbacks"][fallback] = entry["fallbacks"].get(fallback, 0) + 1
        if status >= 400:
            continue
        alt = alternatives(policy, arm, n, cost_usd, prompt, completion)
        if alt is not None:
            entry["compared"] += 1
            entry["compared_cost_usd"] += cost_usd
            entry["cheapest_usd"] += alt[0]
            entry["expensive_usd"] += alt[1]


def add_counter_deltas(
    slot: Slot, now: dict[tuple[str, str], float], before: dict[tuple[str, str], float]
) -> None:
    """Add what each tracked counter grew by since ``before`` to the slot."""
    counters = slot.setdefault("c", {})
    for key, value in now.items():
        delta = value - before.get(key, 0.0)
        if delta > 0:
            name, labels = key
            series = counters.setdefault(name, {})
            series[labels] = series.get(labels, 0.0) + delta


class StatsStore:
    """Where slots live: :class:`proxy.observe.stats_store.MemoryStatsStore` or Redis."""

    backend = "abstract"

    async def write(self, slots: dict[int, Slot]) -> None:
        """Store this replica's slots (by slot start, Unix seconds), replacing older copies."""
        raise NotImplementedError

    async def read(self, since_s: int) -> list[tuple[str, int, Slot]]:
        """Every replica's slots starting at or after ``since_s``: (replica, start, slot)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections."""


class StatsRecorder:
    """This replica's aggregates: appended per request, folded and stored in the background."""

    def __init__(
        self,
        registry: CollectorRegistry,
        alternatives: Alternatives,
        *,
        slot_s: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._alternatives = alternatives
        self.slot_s = slot_s
        self._clock = clock
        self._pending: list[RequestFacts] = []
        self._slots: dict[int, Slot] = {}
        self._flushes = 0
        self._flushing = asyncio.Lock()
        self._tracked = self._scan()
        self._counters_before, _ = read_registry(self._tracked)

    def _scan(self) -> RestrictedRegistry:
        """The part of the registry the slots read (collecting all of it costs more)."""
        names = set(COUNTER_SERIES | GAUGE_SERIES)
        for metric in self._registry.collect():
            for sample in metric.samples:
                if sample.name.startswith(LEARNER_PREFIXES):
                    names.add(sample.name)
        return self._registry.restricted_registry(names)

    def record(
        self,
        policy: str,
        arm: str,
        n: int,
        status: int,
        cost_usd: float,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        cache_hit: bool,
        fallback_reason: str | None,
    ) -> None:
        """Note one finished chat request (the request path's only call: an append)."""
        self._pending.append(
            (
                policy,
                arm,
                n,
                status,
                cost_usd,
                prompt_tokens,
                completion_tokens,
                cache_hit,
                fallback_reason,
            )
        )

    def collect(self) -> dict[int, Slot]:
        """Fold what happened since the last call into the current slot; the slots to write.

        Returns the current slot and every slot not yet written in full (each written whole: a
        store replaces its copy).
        """
        facts, self._pending = self._pending, []
        return self._fold(facts)

    def _fold(self, facts: list[RequestFacts]) -> dict[int, Slot]:
        start = int(self._clock()) // self.slot_s * self.slot_s
        slot = self._slots.setdefault(start, {})
        fold_requests(slot, facts, self._alternatives)
        self._flushes += 1
        if self._flushes % RESCAN_EVERY == 0:
            self._tracked = self._scan()
        counters, gauges = read_registry(self._tracked)
        add_counter_deltas(slot, counters, self._counters_before)
        self._counters_before = counters
        slot["g"] = gauges
        # A store that stays down must not grow this without bound: the oldest go first.
        for old in sorted(self._slots)[:-MAX_UNWRITTEN_SLOTS]:
            del self._slots[old]
        return {start: dict(slot) for start, slot in self._slots.items()}

    def written(self) -> None:
        """The slots of the last :meth:`collect` are stored: keep only the current one."""
        current = max(self._slots)
        self._slots = {current: self._slots[current]}

    async def flush(self, store: StatsStore) -> None:
        """Collect and write this replica's slots (kept for the next flush if the write fails).

        The folding runs in a thread: it is pure Python, so it still takes the GIL, but the
        event loop gets it back every switch interval instead of waiting for a whole batch.
        One flush at a time (the background task and a stats request may overlap).
        """
        async with self._flushing:
            facts, self._pending = self._pending, []
            slots = await asyncio.to_thread(self._fold, facts)
            await store.write(slots)
            self.written()
