"""Prometheus metrics and cost accounting, one registry per app.

Every series is prefixed ``adaptive_``. Label values come from the YAML (policy, arm, upstream,
reranker names) or from small fixed sets, so cardinality stays bounded.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# Fine-grained below 10 ms: a cache hit costs microseconds, ONNX inference a few milliseconds.
DECISION_BUCKETS_S: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
UPSTREAM_BUCKETS_S: tuple[float, ...] = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
)
SAMPLES_BUCKETS: tuple[float, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 64)


class CacheMetrics(Protocol):
    """What the decision cache reports; ``Metrics`` implements it."""

    def cache_hit(self) -> None: ...

    def cache_miss(self) -> None: ...

    def cache_error(self, op: str) -> None: ...


class Metrics:
    """All of the proxy's Prometheus series, in a registry of their own.

    Series:

    - ``adaptive_requests_total{policy,arm,status}`` counter: finished chat requests.
    - ``adaptive_decision_seconds{policy,cache}`` histogram: time to decide (``cache`` is
      ``hit`` or ``miss``).
    - ``adaptive_upstream_seconds{upstream,status}`` histogram: upstream call latency.
    - ``adaptive_cache_hits_total``, ``adaptive_cache_misses_total`` counters: decision cache.
    - ``adaptive_cache_errors_total{op}`` counter: failed cache operations (``get``, ``set``,
      ``ping``, ``encode``, ``decode``).
    - ``adaptive_tokens_total{upstream,kind}`` counter: tokens, ``kind`` is ``prompt`` or
      ``completion``.
    - ``adaptive_cost_usd_total{upstream}`` counter: spend in US dollars.
    - ``adaptive_predictor_fallbacks_total{policy,reason}`` counter: decisions that fell back
      to the policy's default arm.
    - ``adaptive_rerank_failures_total{reranker}`` counter.
    - ``adaptive_budget_lambda{policy}``, ``adaptive_budget_target{policy}``,
      ``adaptive_budget_realised{policy}`` gauges: the budget controller's state.
    - ``adaptive_samples_per_request{policy}`` histogram: n drawn per request.
    - ``adaptive_client_spend_usd_total{key}`` counter: spend per client key name (auth on).
    - ``adaptive_auth_rejections_total{reason}`` counter: requests refused by auth or limits.
    - ``adaptive_passthrough_requests_total{endpoint,upstream,status}`` counter: requests to the
      non-chat OpenAI endpoints forwarded unchanged.

    Methods run on every request, so labelled children are cached in plain dicts (cheaper than
    ``.labels()``, which takes a lock and validates on each call).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._requests = Counter(
            "adaptive_requests",
            "Finished chat requests.",
            ["policy", "arm", "status"],
            registry=reg,
        )
        self._decision = Histogram(
            "adaptive_decision_seconds",
            "Time to reach a routing decision.",
            ["policy", "cache"],
            buckets=DECISION_BUCKETS_S,
            registry=reg,
        )
        self._upstream = Histogram(
            "adaptive_upstream_seconds",
            "Latency of upstream calls.",
            ["upstream", "status"],
            buckets=UPSTREAM_BUCKETS_S,
            registry=reg,
        )
        self._cache_hits = Counter("adaptive_cache_hits", "Decision cache hits.", registry=reg)
        self._cache_misses = Counter(
            "adaptive_cache_misses", "Decision cache misses.", registry=reg
        )
        self._cache_errors = Counter(
            "adaptive_cache_errors", "Failed decision cache operations.", ["op"], registry=reg
        )
        self._tokens = Counter(
            "adaptive_tokens", "Tokens used upstream.", ["upstream", "kind"], registry=reg
        )
        self._cost = Counter(
            "adaptive_cost_usd", "Upstream spend in US dollars.", ["upstream"], registry=reg
        )
        self._fallbacks = Counter(
            "adaptive_predictor_fallbacks",
            "Decisions that fell back to the default arm.",
            ["policy", "reason"],
            registry=reg,
        )
        self._rerank_failures = Counter(
            "adaptive_rerank_failures", "Reranker failures.", ["reranker"], registry=reg
        )
        self._bad_responses = Counter(
            "adaptive_upstream_bad_responses",
            "Upstream answers refused: malformed stream events, over max_response_bytes.",
            ["upstream", "reason"],
            registry=reg,
        )
        self._lambda = Gauge(
            "adaptive_budget_lambda",
            "Price of compute used by the policy.",
            ["policy"],
            registry=reg,
        )
        self._target = Gauge(
            "adaptive_budget_target", "Budget target of the policy.", ["policy"], registry=reg
        )
        self._realised = Gauge(
            "adaptive_budget_realised", "Realised budget of the policy.", ["policy"], registry=reg
        )
        self._samples = Histogram(
            "adaptive_samples_per_request",
            "Samples drawn per request.",
            ["policy"],
            buckets=SAMPLES_BUCKETS,
            registry=reg,
        )
        self._rounds = Histogram(
            "adaptive_sequential_rounds",
            "Rounds drawn per sequential best-of-k request.",
            ["policy"],
            buckets=SAMPLES_BUCKETS,
            registry=reg,
        )
        self._stops = Counter(
            "adaptive_sequential_stops",
            "Why sequential best-of-k stopped (verifier, vote, cap, budget).",
            ["policy", "stopped_by"],
            registry=reg,
        )
        self._verifier_failures = Counter(
            "adaptive_sequential_verifier_failures",
            "Verifier failures of sequential best-of-k (the request went on under vote).",
            ["policy"],
            registry=reg,
        )
        self._cascade = Counter(
            "adaptive_cascade_requests",
            "Cascade requests by the stage that answered and whether they escalated.",
            ["policy", "answered_by", "escalated"],
            registry=reg,
        )
        self._cascade_agreement = Counter(
            "adaptive_cascade_agreement",
            "Cascade requests whose cheap stages gave two or more answers, by whether those "
            "answers all agreed.",
            ["policy", "agreed"],
            registry=reg,
        )
        self._cascade_failures = Counter(
            "adaptive_cascade_stage_failures",
            "Failed calls of a cascade stage.",
            ["policy", "stage"],
            registry=reg,
        )
        self._client_spend = Counter(
            "adaptive_client_spend_usd",
            "Spend per client key name in US dollars.",
            ["key"],
            registry=reg,
        )
        self._auth_rejections = Counter(
            "adaptive_auth_rejections",
            "Requests refused by authentication or per-client limits.",
            ["reason"],
            registry=reg,
        )
        self._passthrough = Counter(
            "adaptive_passthrough_requests",
            "Requests to non-chat OpenAI endpoints, forwarded unchanged.",
            ["endpoint", "upstream", "status"],
            registry=reg,
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._decision_children: dict[tuple[str, bool], Histogram] = {}
        self._upstream_children: dict[tuple[str, int | str], Histogram] = {}
        self._usage_children: dict[str, tuple[Counter, Counter, Counter]] = {}
        self._samples_children: dict[str, Histogram] = {}

    def record_request(self, policy: str, arm: str, status: int) -> None:
        """Count one finished request with its HTTP status."""
        key = (policy, arm, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._requests.labels(policy, arm, str(status))
            self._request_children[key] = child
        child.inc()

    def observe_decision(self, policy: str, seconds: float, cache_hit: bool) -> None:
        """Record how long the decision took and whether it came from the cache."""
        key = (policy, cache_hit)
        child = self._decision_children.get(key)
        if child is None:
            child = self._decision.labels(policy, "hit" if cache_hit else "miss")
            self._decision_children[key] = child
        child.observe(seconds)

    def observe_upstream(self, upstream: str, seconds: float, status: int | str) -> None:
        """Record one upstream call; ``status`` is the HTTP status or e.g. ``"error"``."""
        key = (upstream, status)
        child = self._upstream_children.get(key)
        if child is None:
            child = self._upstream.labels(upstream, str(status))
            self._upstream_children[key] = child
        child.observe(seconds)

    def cache_hit(self) -> None:
        """Count a decision cache hit."""
        self._cache_hits.inc()

    def cache_miss(self) -> None:
        """Count a decision cache miss."""
        self._cache_misses.inc()

    def cache_error(self, op: str) -> None:
        """Count a failed cache operation (``op`` from a small fixed set)."""
        self._cache_errors.labels(op).inc()

    def record_usage(
        self, upstream: str, prompt_tokens: int, completion_tokens: int, cost_usd: float
    ) -> None:
        """Add one upstream call's token usage and cost."""
        children = self._usage_children.get(upstream)
        if children is None:
            children = (
                self._tokens.labels(upstream, "prompt"),
                self._tokens.labels(upstream, "completion"),
                self._cost.labels(upstream),
            )
            self._usage_children[upstream] = children
        prompt, completion, cost = children
        # Counters reject negative increments; bad usage data must not fail a request.
        if prompt_tokens > 0:
            prompt.inc(prompt_tokens)
        if completion_tokens > 0:
            completion.inc(completion_tokens)
        if cost_usd > 0:
            cost.inc(cost_usd)

    def predictor_fallback(self, policy: str, reason: str) -> None:
        """Count a decision that fell back to the policy's default arm."""
        self._fallbacks.labels(policy, reason).inc()

    def upstream_bad_response(self, upstream: str, reason: str) -> None:
        """Count an upstream answer the proxy refused (``malformed_stream``, ``too_large``)."""
        self._bad_responses.labels(upstream, reason).inc()

    def rerank_failure(self, reranker: str) -> None:
        """Count a reranker failure."""
        self._rerank_failures.labels(reranker).inc()

    def set_budget(self, policy: str, lambda_: float, target: float, realised: float) -> None:
        """Publish the budget controller's state for one policy."""
        self._lambda.labels(policy).set(lambda_)
        self._target.labels(policy).set(target)
        self._realised.labels(policy).set(realised)

    def observe_samples(self, policy: str, n: int) -> None:
        """Record how many samples one request drew."""
        child = self._samples_children.get(policy)
        if child is None:
            child = self._samples.labels(policy)
            self._samples_children[policy] = child
        child.observe(n)

    def observe_rounds(self, policy: str, rounds: int, stopped_by: str) -> None:
        """Record one sequential best-of-k request: its rounds and why it stopped."""
        self._rounds.labels(policy).observe(rounds)
        self._stops.labels(policy, stopped_by).inc()

    def verifier_failure(self, policy: str) -> None:
        """Count a verifier failure of sequential best-of-k."""
        self._verifier_failures.labels(policy).inc()

    def observe_cascade(self, policy: str, answered_by: str, escalated: bool) -> None:
        """Count one cascade request by its answering stage."""
        self._cascade.labels(policy, answered_by, "true" if escalated else "false").inc()

    def observe_cascade_agreement(self, policy: str, agreed: bool) -> None:
        """Count one cascade whose cheap stages' answers could be compared (two or more)."""
        self._cascade_agreement.labels(policy, "true" if agreed else "false").inc()

    def cascade_stage_failure(self, policy: str, stage: str) -> None:
        """Count a failed call of a cascade stage."""
        self._cascade_failures.labels(policy, stage).inc()

    def record_client_spend(self, key_name: str, cost_usd: float) -> None:
        """Add a request's cost to its client key's spend."""
        if cost_usd > 0:
            self._client_spend.labels(key_name).inc(cost_usd)

    def auth_rejection(self, reason: str) -> None:
        """Count a request refused by auth (``reason`` from a small fixed set)."""
        self._auth_rejections.labels(reason).inc()

    def record_passthrough(self, endpoint: str, upstream: str, status: int) -> None:
        """Count one forwarded non-chat request."""
        self._passthrough.labels(endpoint, upstream, str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
