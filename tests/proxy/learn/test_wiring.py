"""The learning loop's parts built from a config: the store it names (a real SQLite file, a real
redis-server), the prior's name, what each policy's head learns, the learner, the log's series."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from proxy.config.schema import Config, load_config_text
from proxy.learn.store_redis import RedisOutcomeStore
from proxy.learn.store_sqlite import SqliteOutcomeStore
from proxy.learn.targets import SAMPLE_TARGET
from proxy.learn.wiring import (
    OutcomeLogSeries,
    build_learner,
    build_store,
    head_specs,
    learn_policies,
    prior_version,
)
from tests.proxy.learn.builders import make_label, make_record
from tests.redis_server import RedisServer

POLICIES = """
upstreams:
  small: {{base_url: "http://127.0.0.1:9/v1", model: s}}
  large: {{base_url: "http://127.0.0.1:9/v1", model: l}}
policies:
  router: {{type: route, cheap: small, expensive: large, threshold: 0.5, learn: true}}
  quiet: {{type: route, cheap: small, expensive: large, threshold: 0.5}}
  odd-gain:
    {{type: route, cheap: small, expensive: large, threshold: 0.5, predictor_output: p_weak,
     learn: true}}
  casc:
    type: cascade
    stages: [{{upstream: small, name: first}}, {{upstream: large, name: last}}]
    escalate: {{threshold: 0.5}}
    learn: true
  sampler: {{type: best_of_k, upstream: small, n_max: 4, predictor_output: p_weak,
            lambda: 1.0, learn: true}}
predictor: {{type: {predictor}}}
{extra}
"""


def config(extra: str = "", *, predictor: str = "hash") -> Config:
    return load_config_text(POLICIES.format(extra=extra, predictor=predictor), env={})


def test_only_policies_with_learn_true_learn() -> None:
    assert learn_policies(config()) == ["router", "odd-gain", "casc", "sampler"]


def test_the_prior_is_named_after_the_shipped_model_or_the_predictor_section() -> None:
    assert prior_version(config(predictor="onnx")) == "shipped-onnx-2.0.0"
    hashed = config()
    assert prior_version(hashed) == f"hash-{hashed.predictor_version()}"


def test_each_policy_learns_what_it_reads() -> None:
    specs = {s.policy: s for s in head_specs(config(predictor="onnx"))}
    # A route reading an output no gain derives from two arms has no head to learn.
    assert sorted(specs) == ["casc", "router", "sampler"]
    router = specs["router"]
    assert [(t.name, t.prior_output) for t in router.targets] == [
        ("cheap", "p_weak"),
        ("expensive", "p_strong"),
    ]
    assert dict(router.derived) == {"gain": ("p_strong", "p_weak")}
    # A cascade's arms are its stages, as x-adaptive-arm and its free labels name them.
    assert [t.name for t in specs["casc"].targets] == ["first", "last"]
    assert [(t.name, t.prior_output, t.kind) for t in specs["sampler"].targets] == [
        (SAMPLE_TARGET, "p_weak", "sample_success")
    ]


async def test_without_redis_the_log_is_an_sqlite_file_under_the_user_data_dir(
    tmp_path: Path,
) -> None:
    store = build_store(config(), env={"XDG_DATA_HOME": str(tmp_path)})
    try:
        assert isinstance(store, SqliteOutcomeStore)
        await store.write([make_record("w-1")])
        assert (await store.get("w-1")).status == "found"
    finally:
        await store.aclose()
    assert (tmp_path / "adaptive-proxy" / "outcomes.sqlite3").is_file()
    own = tmp_path / "elsewhere" / "log.sqlite3"
    store = build_store(config(f'learning: {{store: "{own}"}}'))
    await store.aclose()
    assert isinstance(store, SqliteOutcomeStore) and store.path == own


async def test_with_cache_redis_url_the_log_is_the_shared_redis_stream(tmp_path: Path) -> None:
    server = RedisServer()
    server.start()
    try:
        for extra in (
            f'cache: {{redis_url: "{server.url}"}}',
            f'learning: {{store: "{server.url}", retention_days: 7}}',
        ):
            store = build_store(config(extra))
            try:
                assert isinstance(store, RedisOutcomeStore)
                await store.write([make_record("w-r"), make_label("w-r")])
                found = await store.get("w-r")
                assert found.status == "found" and len(found.labels) == 1
            finally:
                await store.aclose()
        # learning.store names a file: SQLite, even with a Redis cache.
        path = tmp_path / "log.sqlite3"
        store = build_store(
            config(f'cache: {{redis_url: "{server.url}"}}\nlearning: {{store: "{path}"}}')
        )
        await store.aclose()
        assert isinstance(store, SqliteOutcomeStore)
    finally:
        server.close()


async def test_build_learner_reads_the_learning_section(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.sqlite3"
    cfg = config(f'learning: {{store: "{path}", min_labels: 7, refit_every: 3, poll_s: 2.5}}')
    setup = build_learner(cfg, models_dir=tmp_path / "models")
    try:
        assert (setup.learner.settings.min_labels, setup.learner.settings.refit_every) == (7, 3)
        assert setup.poll_s == 2.5
        assert setup.learner.prior_version == prior_version(cfg)
        assert [s.policy for s in setup.specs] == ["router", "casc", "sampler"]
        await setup.store.write([make_record("l-1"), make_label("l-1")])
        report = await setup.learner.refit(setup.specs[0])
        assert (report.status, report.labels["feedback"]) == ("too_few", 1)
    finally:
        await setup.store.aclose()
    # The learner reads the file the server writes.
    assert isinstance(setup.store, SqliteOutcomeStore) and setup.store.path == path


def test_the_logs_counts_are_prometheus_series() -> None:
    registry = CollectorRegistry()
    series = OutcomeLogSeries(registry)
    series.outcome_written(3)
    series.outcome_dropped("queue_full", 2)
    series.outcome_store_error("write")
    series.outcome_store_error("write")
    assert registry.get_sample_value("adaptive_outcomes_written_total") == 3
    assert (
        registry.get_sample_value("adaptive_outcomes_dropped_total", {"reason": "queue_full"}) == 2
    )
    assert registry.get_sample_value("adaptive_outcome_store_errors_total", {"op": "write"}) == 2
