"""The ``GET /v1/adaptive/stats`` body, from the slots of every replica in the window.

Pure functions of the slots (no I/O): the handler reads the store and runs this in a thread.
The body's shape is documented in docs/api.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from proxy.observe.stats import LEARNER_PREFIXES, Slot

# About this many points per series, whatever the window.
SERIES_POINTS = 60


def step_for(window_s: int, slot_s: int) -> int:
    """The width of one series point: a whole number of slots, about ``SERIES_POINTS`` points."""
    slots = max(1, math.ceil(window_s / SERIES_POINTS / slot_s))
    return slots * slot_s


def _labels(text: str) -> dict[str, str]:
    value = orjson.loads(text)
    return value if isinstance(value, dict) else {}


def _add(into: dict[str, Any], key: str, value: float) -> None:
    into[key] = into.get(key, 0) + value


def _merge_policy(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key in (
        "requests",
        "errors",
        "cost_usd",
        "cheapest_usd",
        "expensive_usd",
        "compared",
        "compared_cost_usd",
        "samples",
        "cache_hits",
    ):
        _add(into, key, part.get(key, 0))
    for group in ("arms", "n", "fallbacks"):
        target = into.setdefault(group, {})
        for name, count in (part.get(group) or {}).items():
            _add(target, name, count)


def _merge_counters(into: dict[str, dict[str, float]], part: Mapping[str, Any]) -> None:
    for name, children in part.items():
        series = into.setdefault(name, {})
        for labels, value in children.items():
            _add(series, labels, value)


class _Bucket:
    """The merged slots of one series point (or of the whole window)."""

    def __init__(self) -> None:
        self.policies: dict[str, dict[str, Any]] = {}
        self.counters: dict[str, dict[str, float]] = {}
        # Gauges: per replica, the value of its latest slot in this bucket.
        self.gauges: dict[str, tuple[int, Mapping[str, Any]]] = {}

    def add(self, replica: str, start: int, slot: Slot) -> None:
        for name, part in (slot.get("p") or {}).items():
            _merge_policy(self.policies.setdefault(name, {}), part)
        _merge_counters(self.counters, slot.get("c") or {})
        seen = self.gauges.get(replica)
        if slot.get("g") and (seen is None or seen[0] < start):
            self.gauges[replica] = (start, slot["g"])

    def merge(self, other: _Bucket) -> None:
        """Add another bucket (of later or other slots) to this one."""
        for name, part in other.policies.items():
            _merge_policy(self.policies.setdefault(name, {}), part)
        _merge_counters(self.counters, other.counters)
        for replica, (start, gauges) in other.gauges.items():
            seen = self.gauges.get(replica)
            if seen is None or seen[0] < start:
                self.gauges[replica] = (start, gauges)

    def counter(self, name: str) -> Iterable[tuple[dict[str, str], float]]:
        for labels, value in self.counters.get(name, {}).items():
            yield _labels(labels), value

    def gauge_mean(self, name: str, **match: str) -> float | None:
        """The mean over replicas of a gauge child's latest value (``None``: never set)."""
        values = []
        for _, gauges in self.gauges.values():
            for labels, value in (gauges.get(name) or {}).items():
                # A null is a replica's NaN (not known yet) written before slots left it out.
                if value is not None and _labels(labels) == match:
                    values.append(float(value))
        return sum(values) / len(values) if values else None


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """The q-quantile of cumulative histogram buckets (upper bound → count), interpolated
    within the bucket as Prometheus' ``histogram_quantile`` does."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _budget(bucket: _Bucket, policy: str) -> dict[str, float | None] | None:
    values = {
        key: bucket.gauge_mean(f"adaptive_budget_{name}", policy=policy)
        for key, name in (("target", "target"), ("realised", "realised"), ("lambda", "lambda"))
    }
    return values if any(v is not None for v in values.values()) else None


def _rate(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _policy_summary(
    bucket: _Bucket, name: str, info: Mapping[str, Any], seconds: float
) -> dict[str, Any]:
    p = bucket.policies.get(name, {})
    requests = int(p.get("requests", 0))
    cost = float(p.get("cost_usd", 0.0))
    hits = int(p.get("cache_hits", 0))
    misses = requests - hits
    fallbacks = {k: int(v) for k, v in sorted((p.get("fallbacks") or {}).items())}
    compared = int(p.get("compared", 0))
    out: dict[str, Any] = {
        "type": info.get("type"),
        "requests": requests,
        "errors": int(p.get("errors", 0)),
        "rps": requests / seconds if seconds else 0.0,
        "cost_usd": cost,
        "cost_per_request_usd": _rate(cost, requests),
        "arms": {k: int(v) for k, v in sorted((p.get("arms") or {}).items())},
        "samples": {
            "total": int(p.get("samples", 0)),
            "mean": _rate(float(p.get("samples", 0)), requests),
            "n_max": info.get("n_max"),
            "by_n": {
                k: int(v) for k, v in sorted((p.get("n") or {}).items(), key=lambda kv: int(kv[0]))
            },
        },
        "alternatives": {
            "requests": compared,
            "cost_usd": float(p.get("compared_cost_usd", 0.0)),
            "cheapest_arm": info.get("cheapest_arm"),
            "cheapest_cost_usd": float(p.get("cheapest_usd", 0.0)),
            "most_expensive_arm": info.get("most_expensive_arm"),
            "most_expensive_cost_usd": float(p.get("expensive_usd", 0.0)),
        },
        "cache": {"hits": hits, "misses": misses, "hit_rate": _rate(hits, requests)},
        "fallbacks": fallbacks,
        "budget": _budget(bucket, name),
        "sequential": _sequential(bucket, name),
        "cascade": _cascade(bucket, name),
    }
    return out


def _sequential(bucket: _Bucket, name: str) -> dict[str, Any] | None:
    stops: dict[str, int] = {}
    for labels, value in bucket.counter("adaptive_sequential_stops_total"):
        if labels.get("policy") == name:
            _add(stops, labels.get("stopped_by", ""), int(value))
    count = sum(
        v
        for lab, v in bucket.counter("adaptive_sequential_rounds_count")
        if lab == {"policy": name}
    )
    total = sum(
        v for lab, v in bucket.counter("adaptive_sequential_rounds_sum") if lab == {"policy": name}
    )
    if not stops and not count:
        return None
    return {"requests": int(count), "rounds_mean": _rate(total, count), "stop_reasons": stops}


def _cascade(bucket: _Bucket, name: str) -> dict[str, Any] | None:
    answered: dict[str, int] = {}
    escalated = total = 0.0
    for labels, value in bucket.counter("adaptive_cascade_requests_total"):
        if labels.get("policy") != name:
            continue
        total += value
        if labels.get("escalated") == "true":
            escalated += value
        _add(answered, labels.get("answered_by", ""), int(value))
    if not total:
        return None
    agreed = compared = 0.0
    for labels, value in bucket.counter("adaptive_cascade_agreement_total"):
        if labels.get("policy") == name:
            compared += value
            if labels.get("agreed") == "true":
                agreed += value
    return {
        "requests": int(total),
        "escalated": int(escalated),
        "escalation_rate": escalated / total,
        # A cheap answer is returned when the cheap stages agree (or the gain model says the
        # last stage does not pay): the share answered without escalating.
        "cheap_answer_rate": 1 - escalated / total,
        # Of the requests whose cheap stages gave two or more answers, the share where they all
        # agreed (``None``: no such request in the window).
        "agreement_requests": int(compared),
        "agreement_rate": agreed / compared if compared else None,
        "answered_by": answered,
    }


def _upstreams(bucket: _Bucket) -> dict[str, dict[str, Any]]:
    calls: dict[str, float] = {}
    errors: dict[str, float] = {}
    for labels, value in bucket.counter("adaptive_upstream_seconds_count"):
        upstream = labels.get("upstream", "")
        _add(calls, upstream, value)
        if labels.get("status") != "200":
            _add(errors, upstream, value)
    cumulative: dict[str, dict[float, float]] = {}
    for labels, value in bucket.counter("adaptive_upstream_seconds_bucket"):
        per = cumulative.setdefault(labels.get("upstream", ""), {})
        le = float(labels.get("le", "inf"))
        per[le] = per.get(le, 0.0) + value
    return {
        name: {
            "calls": int(count),
            "errors": int(errors.get(name, 0)),
            "p50_s": quantile(cumulative.get(name, {}), 0.5),
            "p99_s": quantile(cumulative.get(name, {}), 0.99),
        }
        for name, count in sorted(calls.items())
    }


def _learner(bucket: _Bucket) -> dict[str, Any] | None:
    counters = {
        name: dict(children)
        for name, children in bucket.counters.items()
        if name.startswith(LEARNER_PREFIXES)
    }
    gauges: dict[str, dict[str, float]] = {}
    for _, slot_gauges in bucket.gauges.values():
        for name, children in slot_gauges.items():
            if name.startswith(LEARNER_PREFIXES):
                gauges.setdefault(name, {}).update(children)
    if not counters and not gauges:
        return None
    return {"counters": counters, "gauges": gauges}


def build_stats(
    rows: Iterable[tuple[str, int, Slot]],
    *,
    window_s: int,
    now_s: int,
    slot_s: int,
    policies: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The stats body over ``[now_s - window_s, now_s]`` from every replica's slots."""
    step_s = step_for(window_s, slot_s)
    since = (now_s - window_s) // slot_s * slot_s
    first = since // step_s * step_s
    total = _Bucket()
    points: dict[int, _Bucket] = {}
    replicas = set()
    for replica, start, slot in rows:
        if start < since:
            continue
        replicas.add(replica)
        points.setdefault(start // step_s * step_s, _Bucket()).add(replica, start, slot)
    for part in points.values():  # the window's total from its ~60 points, not every slot
        total.merge(part)
    names = sorted(set(policies) | set(total.policies))
    body_policies = {}
    starts = range(first, now_s + 1, step_s)
    for name in names:
        summary = _policy_summary(total, name, policies.get(name, {}), float(window_s))
        series = []
        for t in starts:
            point = points.get(t)
            p = point.policies.get(name, {}) if point else {}
            requests = int(p.get("requests", 0))
            series.append(
                {
                    "t": t,
                    "requests": requests,
                    "rps": requests / step_s,
                    "cost_usd": float(p.get("cost_usd", 0.0)),
                    "cheapest_cost_usd": float(p.get("cheapest_usd", 0.0)),
                    "most_expensive_cost_usd": float(p.get("expensive_usd", 0.0)),
                    "compared": int(p.get("compared", 0)),
                    "compared_cost_usd": float(p.get("compared_cost_usd", 0.0)),
                    "samples_mean": _rate(float(p.get("samples", 0)), requests),
                    "arms": {k: int(v) for k, v in (p.get("arms") or {}).items()},
                    "budget": _budget(point, name) if point else None,
                }
            )
        summary["series"] = series
        body_policies[name] = summary
    upstreams = _upstreams(total)
    upstream_series: dict[str, list[dict[str, Any]]] = {}
    for t in starts:
        point = points.get(t)
        per = _upstreams(point) if point else {}
        for name in upstreams:
            row = per.get(name, {})
            upstream_series.setdefault(name, []).append(
                {
                    "t": t,
                    "calls": row.get("calls", 0),
                    "errors": row.get("errors", 0),
                    "p50_s": row.get("p50_s"),
                    "p99_s": row.get("p99_s"),
                }
            )
    for name, row in upstreams.items():
        row["series"] = upstream_series.get(name, [])
    spend = {
        labels.get("key", ""): value
        for labels, value in total.counter("adaptive_client_spend_usd_total")
    }
    return {
        "object": "adaptive.stats",
        "window_s": window_s,
        "step_s": step_s,
        "now_s": now_s,
        "replicas": sorted(replicas),
        "policies": body_policies,
        "upstreams": upstreams,
        "client_spend_usd": spend,
        "learner": _learner(total),
    }
