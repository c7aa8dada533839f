"""The learning loop's parts built from a loaded config: store, outcome log, heads, learner.

What the server (:mod:`proxy.http.outcomes`) and the learner's command line both need, so that
they read one config the same way:

* :func:`learn_policies`: the policies with ``learn: true``;
* :func:`build_store`: the outcome store, a Redis Stream when ``cache.redis_url`` is set (or
  ``learning.store`` names a Redis server), else an SQLite file (``learning.store``, default under
  the user data dir);
* :func:`prior_version`: the name of the shipped prior (what ``model_version`` reports until a
  learned head is promoted);
* :func:`head_specs`: what each policy's head learns (its targets and derived outputs);
* :func:`build_learner`: a :class:`~proxy.learn.learner.Learner` and the specs it refits.

:class:`OutcomeLogSeries` counts what the log writes, drops and fails in the app's ``/metrics``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

import predictor_onnx
from proxy.config.schema import Config
from proxy.learn.explore import ExploreSettings
from proxy.learn.store import OutcomeStore, default_sqlite_path
from proxy.learn.store_redis import RedisOutcomeStore
from proxy.learn.store_sqlite import SqliteOutcomeStore
from proxy.learn.targets import HeadSpec, TargetSpec, best_of_k_spec, route_spec
from proxy.policies.base import BasePolicy
from proxy.policies.best_of_k import BestOfKPolicy
from proxy.policies.cascade import CascadePolicy
from proxy.policies.ladder import LadderPolicy
from proxy.policies.route import RoutePolicy
from proxy.wire.redis_client import make_redis

if TYPE_CHECKING:
    from proxy.learn.learner import Learner, LearnerSettings

#: Without a manifest naming them, the one gain every predictor type gives: strong − weak.
DEFAULT_GAINS: Mapping[str, tuple[str, str]] = {"gain": ("p_strong", "p_weak")}


def learn_policies(config: Config) -> list[str]:
    """The names of the policies with ``learn: true``, in the file's order."""
    return [name for name, policy in config.policies.items() if policy.learn]


def store_url(config: Config) -> str | None:
    """The Redis URL of the outcome store (``None``: the embedded SQLite file)."""
    learning = config.learning
    if learning.is_redis():
        return learning.store
    if learning.store is None:
        return config.cache.redis_url
    return None


def sqlite_path(config: Config, env: Mapping[str, str] | None = None) -> Path:
    """The SQLite file of the outcome store when it is not Redis."""
    store = config.learning.store
    if store is not None and not config.learning.is_redis():
        return Path(store).expanduser()
    return default_sqlite_path(env)


def build_store(
    config: Config,
    *,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] | None = None,
) -> OutcomeStore:
    """The outcome store the config names (its own Redis client, closed with it)."""
    learning = config.learning
    url = store_url(config)
    if url is not None:
        cache = config.cache
        client = make_redis(
            url,
            timeout_s=max(cache.timeout_s, 0.5),
            max_connections=cache.max_connections,
            health_check_interval_s=cache.health_check_interval_s,
        )
        return RedisOutcomeStore(
            client,
            retention_days=learning.retention_days,
            max_entries=learning.max_entries,
            timeout_s=max(cache.timeout_s, 0.5),
            clock=clock,
        )
    return SqliteOutcomeStore(
        sqlite_path(config, env),
        retention_days=learning.retention_days,
        max_records=learning.max_entries,
        clock=clock or time.time,
    )


def _onnx_manifest(config: Config) -> dict[str, object] | None:
    if config.predictor.type != "onnx":
        return None
    folder = (
        Path(config.predictor.path)
        if config.predictor.path
        else Path(predictor_onnx.__file__).resolve().parent / "model"
    )
    try:
        manifest: dict[str, object] = json.loads((folder / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None  # the predictor's own load reports a broken model
    return manifest


def prior_version(config: Config) -> str:
    """The shipped prior's name: ``shipped-onnx-<manifest version>`` for the ONNX predictor,
    else ``<type>-<hash of the predictor section>``."""
    manifest = _onnx_manifest(config)
    if manifest is not None and manifest.get("version"):
        return f"shipped-onnx-{manifest['version']}"
    return f"{config.predictor.type}-{config.predictor_version()}"


def predictor_gains(config: Config) -> dict[str, tuple[str, str]]:
    """Each gain output and the two outputs it is the difference of (expensive, cheap)."""
    manifest = _onnx_manifest(config)
    gains = manifest.get("gains") if manifest is not None else None
    if not isinstance(gains, dict):
        return dict(DEFAULT_GAINS)
    return {str(k): (f"p_{v[0]}", f"p_{v[1]}") for k, v in gains.items() if len(v) == 2}


def head_spec(
    name: str, policy: BasePolicy, gains: Mapping[str, tuple[str, str]] = DEFAULT_GAINS
) -> HeadSpec | None:
    """What policy ``name``'s head learns; ``None`` when its predictions cannot be corrected
    (a gain the predictor does not derive from two arm outputs).

    * route: the success of ``cheap`` and ``expensive`` (the outputs its gain is made of);
    * cascade: the same two targets, named after its first and last stage (the arm names of
      ``x-adaptive-arm``, of its free labels and of explored pairs), gain ``gain``;
    * best_of_k: one sample's success probability (its ``predictor_output``);
    * ladder: each arm's reward (its ``predictor_output``).
    """
    if isinstance(policy, RoutePolicy):
        pair = gains.get(policy.predictor_output)
        if pair is None:
            return None
        return route_spec(
            name,
            cheap_output=pair[1],
            expensive_output=pair[0],
            gain_output=policy.predictor_output,
        )
    if isinstance(policy, CascadePolicy):
        pair = gains.get("gain")
        if pair is None:
            return None
        first, last = policy.stages[0].label, policy.stages[-1].label
        targets = (
            TargetSpec(first, pair[1], "arm_reward"),
            TargetSpec(last, pair[0], "arm_reward"),
        )
        return HeadSpec(name, targets, {"gain": (pair[0], pair[1])})
    if isinstance(policy, BestOfKPolicy):
        return best_of_k_spec(name, output=policy.predictor_output)
    if isinstance(policy, LadderPolicy):
        outputs = [arm.predictor_output for arm in policy.arms]
        if len(set(outputs)) != len(outputs):
            return None
        return HeadSpec(
            name,
            tuple(TargetSpec(a.name, a.predictor_output, "arm_reward") for a in policy.arms),
        )
    return None


def head_specs(config: Config) -> list[HeadSpec]:
    """The head specs of every ``learn: true`` policy that has one."""
    gains = predictor_gains(config)
    specs = (head_spec(n, config.policies[n], gains) for n in learn_policies(config))
    return [s for s in specs if s is not None]


def learner_settings(config: Config) -> LearnerSettings:
    """The learner's settings from ``learning:`` (the rest are the learner's defaults)."""
    # The learner needs scipy (40 MB, a second to import): only a learner imports it.
    from proxy.learn.learner import LearnerSettings

    learning = config.learning
    return LearnerSettings(min_labels=learning.min_labels, refit_every=learning.refit_every)


@dataclass(frozen=True)
class LearnerSetup:
    """A learner on the config's store and the specs of the policies it refits."""

    learner: Learner
    specs: list[HeadSpec]
    store: OutcomeStore
    poll_s: float


def build_learner(
    config: Config,
    *,
    store: OutcomeStore | None = None,
    models_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    settings: LearnerSettings | None = None,
) -> LearnerSetup:
    """The learner of ``config`` (for ``adaptive-proxy learn`` and ``serve --learn``): on the
    outcome store the server writes (or ``store``), exporting to ``models_dir`` (default
    ``<user data dir>/models``); close ``setup.store`` when done. Run it with
    ``setup.learner.run(setup.specs, poll_s=setup.poll_s, stop=...)``."""
    from proxy.learn.export import HeadExporter, default_models_dir
    from proxy.learn.learner import Learner

    store = store if store is not None else build_store(config, env=env)
    learner = Learner(
        store,
        HeadExporter(models_dir if models_dir is not None else default_models_dir(env)),
        prior_version=prior_version(config),
        settings=settings if settings is not None else learner_settings(config),
    )
    return LearnerSetup(learner, head_specs(config), store, config.learning.poll_s)


def explore_settings(config: Config) -> ExploreSettings:
    """The exploration keys of ``learning:``."""
    learning = config.learning
    return ExploreSettings(
        explore_fraction=learning.explore_fraction,
        explore_budget_usd_per_day=learning.explore_budget_usd_per_day,
        judge=learning.judge,
    )


class OutcomeLogSeries:
    """The outcome log's counters in the app's registry (an
    :class:`~proxy.learn.log.OutcomeLogMetrics`)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.written = Counter(
            "adaptive_outcomes_written",
            "Outcome records and labels written to the outcome store.",
            registry=registry,
        )
        self.dropped = Counter(
            "adaptive_outcomes_dropped",
            "Outcome records and labels lost, by reason (queue_full, store, orphan, shutdown, "
            "invalid).",
            ["reason"],
            registry=registry,
        )
        self.store_errors = Counter(
            "adaptive_outcome_store_errors",
            "Failed calls to the outcome store, by operation (write, read, trim).",
            ["op"],
            registry=registry,
        )

    def outcome_written(self, n: int) -> None:
        """Count written entries."""
        self.written.inc(n)

    def outcome_dropped(self, reason: str, n: int) -> None:
        """Count lost entries."""
        self.dropped.labels(reason).inc(n)

    def outcome_store_error(self, op: str) -> None:
        """Count a failed store call."""
        self.store_errors.labels(op).inc()
