"""The learner as a process of its own: the store, the heads and the loop a config describes.

``adaptive-proxy learn --config FILE`` (and ``serve --learn``, which starts that command as a
child) builds its learner with :func:`proxy.learn.wiring.build_learner`, on the same store,
prior name and head specs the server's outcome log and live heads use, so the process that
writes a head and the replicas that serve it cannot disagree about either:

* :func:`models_dir`: where promoted heads are exported (next to an SQLite store's file, so two
  deployments with two files keep two folders; else under the user data dir);
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

from proxy.config.schema import Config
from proxy.learn.export import default_models_dir
from proxy.learn.wiring import LearnerSetup, build_learner, sqlite_path, store_url

log = logging.getLogger("proxy.learn")


def store_location(config: Config, env: Mapping[str, str] | None = None) -> str:
    """The outcome store's Redis URL or SQLite file, as the server resolves it."""
    return store_url(config) or str(sqlite_path(config, env))


def models_dir(config: Config, env: Mapping[str, str] | None = None) -> Path:
    """Where promoted heads are exported: ``models/`` beside an SQLite store's file, else
    ``<user data dir>/models``."""
    if store_url(config) is not None:
        return default_models_dir(env)
    return sqlite_path(config, env).parent / "models"


def _setup(config: Config, env: Mapping[str, str] | None) -> LearnerSetup:
    return build_learner(config, models_dir=models_dir(config, env), env=env)


async def run_learner(
    config: Config,
    *,
    stop: asyncio.Event,
    once: bool = False,
    env: Mapping[str, str] | None = None,
) -> int:
    """Refit every ``learn: true`` policy when due, every ``learning.poll_s``, until ``stop``
    (``once``: one pass). Returns the exit status: 0, or 2 when there is nothing to learn."""
    setup = _setup(config, env)
    learner, specs, store = setup.learner, setup.specs, setup.store
    try:
        if not specs:
            log.error("learner: no policy has learn: true with a learnable head; nothing to learn")
            return 2
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
        await learner.run(specs, poll_s=setup.poll_s, stop=stop)
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
    setup = _setup(config, env)
    learner, store = setup.learner, setup.store
    try:
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
