"""The learner as a process of its own: the store, the heads and the loop a config describes.

``adaptive-proxy learn --config FILE`` (and ``serve --learn``, which starts that command as a
child) builds everything here from the YAML:

* :func:`open_store`: the outcome store every replica writes: ``learning.store`` when set (a
  ``redis://`` URL or an SQLite file), else a Redis Stream on ``cache.redis_url``, else the
  SQLite file under the user data dir (:func:`proxy.learn.store.default_sqlite_path`).
* :func:`models_dir`: where promoted heads are exported (next to an SQLite store's file, else
  under the user data dir).
* :func:`head_specs`: what each ``learn: true`` policy's head learns.
* :func:`learner_from_config`: the :class:`~proxy.learn.learner.Learner` with
  ``learning.min_labels`` / ``learning.refit_every``.
* :func:`run_learner` / :func:`rollback_policy`: the two things the command does.

The fits run in an executor thread of this process (never on a serving event loop); a process
killed at any point leaves the store's labels and the promoted version as they were (see
:mod:`proxy.learn.learner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from proxy.config.schema import Config
from proxy.learn.export import HeadExporter, default_models_dir
from proxy.learn.learner import Learner, LearnerSettings
from proxy.learn.store import OutcomeStore, default_sqlite_path
from proxy.learn.targets import HeadSpec, best_of_k_spec, route_spec

log = logging.getLogger("proxy.learn")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
#: Redis calls of the learner: a refit reads pages of the log; 2 s bounds each call.
REDIS_TIMEOUT_S = 2.0
REDIS_MAX_CONNECTIONS = 4


def store_location(config: Config, env: Mapping[str, str] | None = None) -> str:
    """The store's URL or file path, as :func:`open_store` resolves it."""
    learning = config.learning
    if learning.store is not None:
        return learning.store
    if config.cache.redis_url:
        return config.cache.redis_url
    return str(default_sqlite_path(env))


def open_store(config: Config, env: Mapping[str, str] | None = None) -> OutcomeStore:
    """The outcome store the config names (see the module's docstring)."""
    learning = config.learning
    where = store_location(config, env)
    if where.startswith(REDIS_SCHEMES):
        from proxy.learn.store_redis import RedisOutcomeStore
        from proxy.wire.redis_client import make_redis

        client = make_redis(
            where,
            timeout_s=REDIS_TIMEOUT_S,
            max_connections=REDIS_MAX_CONNECTIONS,
            health_check_interval_s=config.cache.health_check_interval_s,
        )
        return RedisOutcomeStore(
            client,
            retention_days=learning.retention_days,
            max_entries=learning.max_entries,
            timeout_s=REDIS_TIMEOUT_S,
        )
    from proxy.learn.store_sqlite import SqliteOutcomeStore

    return SqliteOutcomeStore(
        Path(where).expanduser(),
        retention_days=learning.retention_days,
        max_records=learning.max_entries,
    )


def models_dir(config: Config, env: Mapping[str, str] | None = None) -> Path:
    """Where promoted heads are exported: ``models/`` beside an SQLite store's file (so two
    deployments with two files keep two folders), else ``<user data dir>/models``."""
    where = store_location(config, env)
    if where.startswith(REDIS_SCHEMES):
        return default_models_dir(env)
    return Path(where).expanduser().parent / "models"


def prior_version(config: Config) -> str:
    """The name of the shipped prior (the ONNX manifest's version), as ``model_version`` reports
    it until a learned head is promoted."""
    spec = config.predictor
    if spec.type != "onnx":
        return f"{spec.type}-predictor"
    from predictor_onnx.manifest import read_manifest
    from predictor_onnx.runtime import shipped_model_dir

    manifest: Any = read_manifest(Path(spec.path) if spec.path else shipped_model_dir())
    return str(manifest.version)


def head_spec(name: str, policy: Any) -> HeadSpec | None:
    """What the head of policy ``name`` learns; ``None`` for a type the learner cannot fit."""
    if policy.type in ("route", "cascade"):
        # The arms' success (labels by arm name); the gain a route reads is their difference.
        gain = getattr(policy, "predictor_output", "gain")
        return route_spec(
            name, cheap_output="p_weak", expensive_output="p_strong", gain_output=gain
        )
    if policy.type == "best_of_k":
        return best_of_k_spec(name, output=policy.predictor_output)
    return None


def head_specs(config: Config) -> list[HeadSpec]:
    """The heads of every ``learn: true`` policy (a policy type without one is warned about)."""
    specs = []
    for name, policy in config.policies.items():
        if not policy.learn:
            continue
        spec = head_spec(name, policy)
        if spec is None:
            log.warning("learner: policy %s (%s) has no learnable head; skipped", name, policy.type)
            continue
        specs.append(spec)
    return specs


def learner_settings(config: Config) -> LearnerSettings:
    """The learner's settings from ``learning:`` (the rest: :class:`LearnerSettings` defaults)."""
    return LearnerSettings(
        min_labels=config.learning.min_labels, refit_every=config.learning.refit_every
    )


def learner_from_config(
    config: Config, store: OutcomeStore, env: Mapping[str, str] | None = None
) -> Learner:
    """The learner of ``config`` on ``store``, exporting into :func:`models_dir`."""
    return Learner(
        store,
        HeadExporter(models_dir(config, env)),
        prior_version=prior_version(config),
        settings=learner_settings(config),
    )


async def run_learner(
    config: Config,
    *,
    stop: asyncio.Event,
    once: bool = False,
    env: Mapping[str, str] | None = None,
) -> int:
    """Refit every ``learn: true`` policy when due, every ``learning.poll_s``, until ``stop``
    (``once``: one pass). Returns the exit status: 0, or 2 when there is nothing to learn."""
    specs = head_specs(config)
    if not specs:
        log.error("learner: no policy has learn: true; nothing to learn")
        return 2
    store = open_store(config, env)
    try:
        learner = learner_from_config(config, store, env)
        names = ", ".join(s.policy for s in specs)
        log.info(
            "learner (pid %d): policies [%s], store %s, heads in %s; refit every %d labels "
            "from %d, polling every %g s",
            os.getpid(),
            names,
            store_location(config, env),
            learner.exporter.directory,
            config.learning.refit_every,
            config.learning.min_labels,
            config.learning.poll_s,
        )
        if once:
            failed = 0
            for spec in specs:
                try:
                    await learner.refit(spec)
                except Exception:
                    log.exception("learner: refit of %s failed", spec.policy)
                    failed += 1
            return 1 if failed else 0
        await learner.run(specs, poll_s=config.learning.poll_s, stop=stop)
        log.info("learner: stopped")
        return 0
    finally:
        await store.aclose()


async def stop_with_parent(stop: asyncio.Event, *, check_s: float = 1.0) -> None:
    """Set ``stop`` once this process's parent is gone (``serve --learn`` killed outright):
    the learner child must not outlive the server that started it."""
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("learner: the server that started it is gone; stopping")
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(check_s):
                await stop.wait()


async def rollback_policy(
    config: Config, policy: str, env: Mapping[str, str] | None = None
) -> tuple[str | None, str]:
    """Return ``policy`` to its previous version; ``(version before, version now)`` (the prior's
    name when no learned head serves)."""
    if policy not in config.policies or not config.policies[policy].learn:
        learning = sorted(n for n, p in config.policies.items() if p.learn)
        raise KeyError(
            f"no learn: true policy {policy!r} (learning: {', '.join(learning) or 'none'})"
        )
    store = open_store(config, env)
    try:
        learner = learner_from_config(config, store, env)
        before = await store.current_model(policy)
        model = await learner.rollback(policy)
        return (
            None if before is None else before.version,
            learner.model_version(model),
        )
    finally:
        await store.aclose()


def learn_command(config_path: str | None) -> Sequence[str]:
    """The argv tail of the learner child ``serve --learn`` starts."""
    tail = ["learn", "--stop-with-parent"]
    return [*tail, "--config", config_path] if config_path else tail
