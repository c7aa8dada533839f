"""Prometheus metrics: series, labels and values as ``GET /metrics`` would expose them."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from proxy.decide.cache import LruDecisionCache
from proxy.observe.metrics import CacheMetrics, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every exposed sample, keyed by (name, labels)."""
    body, _ = metrics.render()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, frozenset(labels.items()))]


def test_render_is_prometheus_text() -> None:
    body, content_type = Metrics().render()
    assert content_type.startswith("text/plain")
    assert b"# TYPE adaptive_requests_total counter" in body


def test_requests_and_decisions() -> None:
    m = Metrics()
    m.record_request("auto", "strong", 200)
    m.record_request("auto", "strong", 200)
    m.record_request("auto", "cheap", 502)
    m.observe_decision("auto", 0.0004, cache_hit=True)
    m.observe_decision("auto", 0.004, cache_hit=False)
    m.observe_decision("auto", 0.006, cache_hit=False)
    assert value(m, "adaptive_requests_total", policy="auto", arm="strong", status="200") == 2
    assert value(m, "adaptive_requests_total", policy="auto", arm="cheap", status="502") == 1
    hist = "adaptive_decision_seconds"
    assert value(m, f"{hist}_count", policy="auto", cache="hit") == 1
    assert value(m, f"{hist}_count", policy="auto", cache="miss") == 2
    assert value(m, f"{hist}_bucket", policy="auto", cache="miss", le="0.005") == 1
    assert value(m, f"{hist}_bucket", policy="auto", cache="hit", le="0.0005") == 1
    assert abs(value(m, f"{hist}_sum", policy="auto", cache="miss") - 0.01) < 1e-9


def test_upstream_usage_and_cost() -> None:
    m = Metrics()
    m.observe_upstream("gpt-strong", 1.2, 200)
    m.observe_upstream("gpt-strong", 0.3, "error")
    m.record_usage("gpt-strong", prompt_tokens=100, completion_tokens=40, cost_usd=0.0025)
    m.record_usage("gpt-strong", prompt_tokens=10, completion_tokens=0, cost_usd=0.0005)
    assert value(m, "adaptive_upstream_seconds_count", upstream="gpt-strong", status="200") == 1
    assert value(m, "adaptive_upstream_seconds_count", upstream="gpt-strong", status="error") == 1
    assert value(m, "adaptive_tokens_total", upstream="gpt-strong", kind="prompt") == 110
    assert value(m, "adaptive_tokens_total", upstream="gpt-strong", kind="completion") == 40
    assert abs(value(m, "adaptive_cost_usd_total", upstream="gpt-strong") - 0.003) < 1e-12


def test_cache_fallback_rerank_budget_and_samples() -> None:
    m = Metrics()
    m.cache_hit()
    m.cache_miss()
    m.cache_miss()
    m.cache_error("get")
    m.predictor_fallback("auto", "timeout")
    m.rerank_failure("judge")
    m.set_budget("auto", lambda_=0.5, target=0.3, realised=0.25)
    m.set_budget("auto", lambda_=0.75, target=0.3, realised=0.28)
    m.observe_samples("auto-best-of-k", 4)
    m.observe_samples("auto-best-of-k", 1)
    assert value(m, "adaptive_cache_hits_total") == 1
    assert value(m, "adaptive_cache_misses_total") == 2
    assert value(m, "adaptive_cache_errors_total", op="get") == 1
    assert value(m, "adaptive_predictor_fallbacks_total", policy="auto", reason="timeout") == 1
    assert value(m, "adaptive_rerank_failures_total", reranker="judge") == 1
    assert value(m, "adaptive_budget_lambda", policy="auto") == 0.75
    assert value(m, "adaptive_budget_target", policy="auto") == 0.3
    assert value(m, "adaptive_budget_realised", policy="auto") == 0.28
    assert value(m, "adaptive_samples_per_request_count", policy="auto-best-of-k") == 2
    assert value(m, "adaptive_samples_per_request_sum", policy="auto-best-of-k") == 5
    assert value(m, "adaptive_samples_per_request_bucket", policy="auto-best-of-k", le="1.0") == 1


def test_negative_usage_is_ignored_not_raised() -> None:
    m = Metrics()
    m.record_usage("u", prompt_tokens=-1, completion_tokens=5, cost_usd=-0.1)
    assert value(m, "adaptive_tokens_total", upstream="u", kind="prompt") == 0
    assert value(m, "adaptive_tokens_total", upstream="u", kind="completion") == 5


def test_instances_do_not_share_state() -> None:
    a, b = Metrics(), Metrics()
    a.record_request("auto", "strong", 200)
    a.cache_hit()
    assert value(a, "adaptive_requests_total", policy="auto", arm="strong", status="200") == 1
    assert (
        "adaptive_requests_total",
        frozenset({("policy", "auto"), ("arm", "strong"), ("status", "200")}),
    ) not in samples(b)
    assert value(b, "adaptive_cache_hits_total") == 0


async def test_metrics_is_the_cache_metrics_sink() -> None:
    m = Metrics()
    sink: CacheMetrics = m
    cache = LruDecisionCache(max_entries=4, ttl_s=60, metrics=sink)
    await cache.get("k")
    await cache.set("k", {"arm": "cheap"})
    await cache.get("k")
    assert value(m, "adaptive_cache_hits_total") == 1
    assert value(m, "adaptive_cache_misses_total") == 1
