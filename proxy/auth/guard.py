"""Per-request authentication and limits: who is calling, may they, and have they spent enough.

:class:`Authenticator` checks the ``Authorization: Bearer`` key against the master keys (from
environment variables), the YAML's client keys and the keys created at run time; then the
client's request rate and spend through the shared :class:`~proxy.auth.store.AuthStore`. Keys
are compared by their sha256; a key is never stored, logged or echoed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from proxy.auth.keys import MASTER_NAME, UNLIMITED, Client, hash_key
from proxy.auth.spec import AuthConfig, ClientLimits
from proxy.auth.store import AuthStore, AuthStoreError, StoredKey
from proxy.wire.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ProxyError,
    RateLimitedError,
    ServiceUnavailableError,
)

log = logging.getLogger("adaptive_proxy.auth")


class AuthMetrics(Protocol):
    """What the guard reports (implemented by :class:`proxy.observe.metrics.Metrics`)."""

    def record_client_spend(self, key_name: str, cost_usd: float) -> None: ...

    def auth_rejection(self, reason: str) -> None: ...


def bearer_token(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@dataclass(frozen=True)
class KeySpend:
    """One key's limits and spend, as the admin API and the dashboard list them."""

    name: str
    source: str  # "runtime" (the auth store) or "yaml" (the config file)
    limits: ClientLimits
    spend_today_usd: float
    spend_this_month_usd: float


class Authenticator:
    """Authenticates requests and enforces each client's limits."""

    def __init__(
        self,
        config: AuthConfig,
        *,
        env: Mapping[str, str],
        store: AuthStore,
        metrics: AuthMetrics,
    ) -> None:
        masters = [env[name] for name in config.master_key_envs if env.get(name)]
        if not masters:
            raise ValueError(
                "server.auth: none of the master key variables "
                f"({', '.join(config.master_key_envs)}) is set"
            )
        self._master_hashes = tuple(hash_key(key) for key in masters)
        self.master_keys: tuple[str, ...] = tuple(masters)  # for the secret redactor only
        self.store = store
        self._metrics = metrics
        self._on_error = config.on_redis_error
        self._key_cache_ttl_s = config.key_cache_ttl_s
        self._runtime_cache: dict[str, tuple[float, Client]] = {}
        self._store_down = False
        self._unwritten_usd: dict[str, float] = {}
        self._writer: asyncio.Task[None] | None = None
        self.update(config)

    def update(self, config: AuthConfig) -> None:
        """Swap in the YAML keys of a reloaded file (master keys stay those of start-up)."""
        self._yaml = {
            spec.key_sha256: Client(name, spec, source="yaml") for name, spec in config.keys.items()
        }
        self.yaml_names = frozenset(config.keys)

    def yaml_clients(self) -> list[Client]:
        """The clients of the YAML's keys."""
        return list(self._yaml.values())

    def _reject(self, reason: str, error: ProxyError) -> ProxyError:
        self._metrics.auth_rejection(reason)
        return error

    async def authenticate(self, authorization: str | None) -> Client:
        """The client holding the request's key; 401 without a valid one."""
        token = bearer_token(authorization)
        if token is None:
            raise self._reject(
                "missing_key",
                AuthenticationError(
                    "You didn't provide an API key: send it as 'Authorization: Bearer KEY'."
                ),
            )
        digest = hash_key(token)
        for master in self._master_hashes:
            if hmac.compare_digest(digest, master):
                return Client(MASTER_NAME, UNLIMITED, is_master=True, source="master")
        client = self._yaml.get(digest) or await self._runtime_client(digest)
        if client is None:
            raise self._reject("invalid_key", AuthenticationError("Incorrect API key provided."))
        return client

    async def _runtime_client(self, digest: str) -> Client | None:
        now = time.monotonic()
        cached = self._runtime_cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            stored = await self.store.get_key(digest)
        except AuthStoreError as exc:
            # An unknown key cannot be told from a run-time key now: refuse, never guess.
            self._store_failed(exc)
            raise ServiceUnavailableError(
                "the key store is unreachable; try again shortly", code="auth_unavailable"
            ) from None
        self._store_back()
        if stored is None:
            self._runtime_cache.pop(digest, None)
            return None
        client = Client(stored.name, stored.limits, source="runtime")
        if self._key_cache_ttl_s > 0:
            if len(self._runtime_cache) > 10_000:
                self._runtime_cache.clear()
            self._runtime_cache[digest] = (now + self._key_cache_ttl_s, client)
        return client

    def authorize(self, client: Client, model: str) -> None:
        """403 unless ``client`` may use ``model`` (a policy name or an upstream model)."""
        if client.limits.allows(model):
            return
        allowed = ", ".join(client.limits.models or ())
        raise self._reject(
            "model_not_allowed",
            PermissionDeniedError(
                f"key {client.name!r} may not use model {model!r} (allowed: {allowed})",
                param="model",
                code="model_not_allowed",
            ),
        )

    async def admit(self, client: Client, *, spends: bool = True) -> None:
        """Count the request against the client's rate; 429 over its rate or spend limit.

        A request that ``spends`` nothing (it reaches no upstream) is held to the rate limit
        only: a key over its spend limit may still list models or ask for a decision.
        """
        if not client.metered:
            return
        limits = client.limits
        try:
            usage = await self.store.admit(client.name, time.time())
        except AuthStoreError as exc:
            self._store_failed(exc)
            spend_limited = spends and (
                limits.spend_limit_usd_per_day is not None
                or limits.spend_limit_usd_per_month is not None
            )
            closed = (spend_limited and self._on_error.spend == "closed") or (
                limits.requests_per_minute is not None and self._on_error.rate == "closed"
            )
            if closed:
                raise self._reject(
                    "store_unavailable",
                    ServiceUnavailableError(
                        "the proxy cannot check this key's limits now (its store is "
                        "unreachable); try again shortly",
                        code="limits_unavailable",
                        headers={"Retry-After": "1"},
                    ),
                ) from None
            return
        self._store_back()
        rpm = limits.requests_per_minute
        if rpm is not None and usage.requests_this_minute > rpm:
            retry_s = max(1, int(usage.seconds_to_next_minute + 0.999))
            raise self._reject(
                "rate_limit",
                RateLimitedError(
                    f"key {client.name!r} is over its limit of {rpm} requests per minute",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": str(retry_s)},
                ),
            )
        if not spends:
            return
        for spent, limit, period in (
            (usage.spend_today_usd, limits.spend_limit_usd_per_day, "day (UTC)"),
            (usage.spend_this_month_usd, limits.spend_limit_usd_per_month, "month (UTC)"),
        ):
            if limit is not None and spent >= limit:
                error = RateLimitedError(
                    f"key {client.name!r} has spent ${spent:.4f} of its ${limit:g} limit "
                    f"for this {period}",
                    code="spend_limit_exceeded",
                )
                error.error_type = "insufficient_quota"
                raise self._reject("spend_limit", error)

    def record_spend(self, client: Client, cost_usd: float) -> None:
        """Add a finished request's cost to the client's spend, in the background.

        The response does not wait for the write (a Redis round trip); :meth:`flush` waits for
        the writes still pending, at shutdown and in tests.
        """
        if cost_usd <= 0:
            return
        self._metrics.record_client_spend(client.name, cost_usd)
        if client.is_master:
            return
        self._unwritten_usd[client.name] = self._unwritten_usd.get(client.name, 0.0) + cost_usd
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_spend())

    async def _write_spend(self) -> None:
        # Costs that arrive while a write is in flight go together in the next one: under load
        # many requests share one round trip.
        while self._unwritten_usd:
            batch, self._unwritten_usd = self._unwritten_usd, {}
            try:
                await self.store.add_spend(batch, time.time())
            except AuthStoreError as exc:
                self._store_failed(exc)

    async def flush(self) -> None:
        """Wait until every recorded spend is written."""
        while self._writer is not None and not self._writer.done():
            await self._writer

    async def create_key(self, stored: StoredKey) -> bool:
        """Store a run-time key; ``False`` when the name is taken (here or in the YAML)."""
        if stored.name in self.yaml_names or stored.name == MASTER_NAME:
            return False
        return await self.store.create_key(stored)

    async def key_spends(self, now_s: float) -> list[KeySpend]:
        """Every key (run-time and YAML), sorted by name, with its spend at ``now_s``.

        Raises :class:`AuthStoreError` when the store cannot be read.
        """
        rows: list[tuple[str, str, ClientLimits]] = [
            (k.name, "runtime", k.limits) for k in await self.store.list_keys()
        ]
        rows += [(c.name, "yaml", c.limits) for c in self.yaml_clients()]
        spends = []
        for name, source, limits in sorted(rows):
            today, month = await self.store.spend(name, now_s)
            spends.append(KeySpend(name, source, limits, today, month))
        return spends

    async def revoke_key(self, name: str) -> bool:
        """Delete a run-time key; this replica forgets it at once, others within the TTL."""
        revoked = await self.store.revoke_key(name)
        self._runtime_cache = {
            d: entry for d, entry in self._runtime_cache.items() if entry[1].name != name
        }
        return revoked

    def _store_failed(self, exc: AuthStoreError) -> None:
        if not self._store_down:
            self._store_down = True
            log.warning("auth store unreachable (%s); limits fail as configured", exc)

    def _store_back(self) -> None:
        if self._store_down:
            self._store_down = False
            log.warning("auth store reachable again")
