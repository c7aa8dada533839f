"""Live policy reload: a validated snapshot of the config, swapped atomically.

The file is polled for changes (no extra dependency, works on every filesystem and in
containers with mounted ConfigMaps) and reloaded on SIGHUP. A changed file is loaded only once
it has stopped changing (the same size, mtime and sha256 for ``server.reload_settle_s``), so an
editor or a deploy script that writes it in several steps is never caught half-way. An invalid
edit is rejected and logged with every problem; the previous policy keeps serving. A file with
no policy at all is invalid unless ``server.allow_empty_policies`` says it is meant (the rule of
``check`` and ``serve``).
Sections that need new resources (``predictor``, ``cache``, ``server``) are applied at the next
restart, and the log says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from proxy.config.schema import Config, empty_policies_problems, load_config
from proxy.wire.errors import ConfigError

log = logging.getLogger("adaptive_proxy.reload")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One loaded config with its derived versions (computed once, not per request)."""

    config: Config
    policy_versions: Mapping[str, str] = field(default_factory=dict)
    predictor_version: str = ""
    generation: int = 0

    @classmethod
    def of(cls, config: Config, generation: int = 0) -> Snapshot:
        """Derive versions for ``config``."""
        return cls(
            config,
            {name: config.policy_version(name) for name in config.policies},
            config.predictor_version(),
            generation,
        )


Listener = Callable[[Snapshot], None]
#: A check a reloaded config must pass beyond its schema, e.g. against the loaded predictor.
Check = Callable[[Config], list[tuple[str, str]]]


class ConfigHolder:
    """Holds the current :class:`Snapshot`; reloads it from ``path`` when asked or on change."""

    def __init__(
        self, config: Config, *, path: Path | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self._snapshot = Snapshot.of(config)
        self._path = path
        self._env = env
        self._listeners: list[Listener] = []
        self._checks: list[Check] = []
        self._loaded = _fingerprint(path)
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    @property
    def snapshot(self) -> Snapshot:
        """The config in force."""
        return self._snapshot

    @property
    def path(self) -> Path | None:
        """The policy file, if the config came from one."""
        return self._path

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with each newly accepted snapshot."""
        self._listeners.append(listener)

    def add_check(self, check: Check) -> None:
        """Reject every reloaded config for which ``check`` returns problems."""
        self._checks.append(check)

    async def reload(self) -> bool:
        """Re-read the file; True if a new config was accepted, False if rejected or unchanged."""
        if self._path is None:
            return False
        async with self._lock:
            loop = asyncio.get_running_loop()
            path = self._path
            self._loaded = await loop.run_in_executor(None, _fingerprint, path)
            old = self._snapshot.config
            try:
                config = await loop.run_in_executor(None, lambda: load_config(path, env=self._env))
                # The rules ``check`` and ``serve`` apply, so that they accept the same files.
                problems = empty_policies_problems(config)
                problems += [problem for check in self._checks for problem in check(config)]
                if problems:
                    raise ConfigError(problems, source=str(path))
            except ConfigError as exc:
                self.last_error = str(exc)
                log.error("policy reload rejected; the previous policy keeps serving.\n%s", exc)
                return False
            if config == old:
                if self.last_error is not None:
                    # The rejected edit was reverted: readiness must stop reporting it.
                    self.last_error = None
                    log.info(
                        "policy file %s is valid again (the config in force, generation %d); "
                        "the rejected edit is cleared",
                        self._path,
                        self._snapshot.generation,
                    )
                return False
            for section in ("predictor", "cache", "server"):
                if _restart_part(config, section) != _restart_part(old, section):
                    log.warning(
                        "policy reload: changes to '%s' take effect at the next restart", section
                    )
            self._snapshot = Snapshot.of(config, self._snapshot.generation + 1)
            self.last_error = None
            changed = sorted(
                name
                for name in set(config.policies) | set(old.policies)
                if self._snapshot.policy_versions.get(name) != _version(old, name)
            )
            log.info(
                "policy reloaded from %s (generation %d); changed policies: %s",
                self._path,
                self._snapshot.generation,
                ", ".join(changed) or "none",
            )
            for listener in self._listeners:
                listener(self._snapshot)
            return True

    async def watch(self, interval_s: float, settle_s: float = 0.0) -> None:
        """Poll the file; reload it once it has changed and then stayed the same for ``settle_s``.

        Runs until cancelled.
        """
        loop = asyncio.get_running_loop()
        seen: _Fingerprint | None = None
        seen_since = 0.0
        while True:
            # While a change is settling, look again sooner than the normal poll.
            await asyncio.sleep(interval_s if seen is None else min(interval_s, settle_s / 4))
            now = await loop.run_in_executor(None, _fingerprint, self._path)
            if now == self._loaded:
                seen = None
                continue
            if now != seen:
                seen, seen_since = now, time.monotonic()
            if time.monotonic() - seen_since >= settle_s:
                seen = None
                await self.reload()


_Fingerprint = tuple[int, int, str] | None


def _fingerprint(path: Path | None) -> _Fingerprint:
    """(size, mtime_ns, sha256) of ``path``; None when it is missing or unreadable."""
    if path is None:
        return None
    try:
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns, digest


def _version(config: Config, name: str) -> str | None:
    return config.policy_version(name) if name in config.policies else None


def _restart_part(config: Config, section: str) -> object:
    """The part of a section that is read only at start-up (client keys, the access log and
    the default upstream are read per request, so they apply on reload)."""
    if section != "server":
        return getattr(config, section)
    return config.server.model_dump(
        exclude={"auth": {"keys"}, "access_log": True, "default_upstream": True}
    )
