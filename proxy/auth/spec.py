"""The ``server.auth`` YAML section: master keys, client keys, limits, failure modes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator

from proxy.policies.spec import StrictModel

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Key names appear in metric labels, log lines and Redis keys: keep them plain.
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ClientLimits(StrictModel):
    """What one client key may do. ``None`` means unlimited (``models``: every model)."""

    models: tuple[str, ...] | None = None
    spend_limit_usd_per_day: float | None = Field(None, gt=0)
    spend_limit_usd_per_month: float | None = Field(None, gt=0)
    requests_per_minute: int | None = Field(None, gt=0)

    def allows(self, model: str) -> bool:
        """Whether a request may name ``model`` (a policy or an upstream model)."""
        return self.models is None or model in self.models


class ClientKeyConfig(ClientLimits):
    """A client key written in the YAML: its sha256, never the key itself."""

    key_sha256: str

    @field_validator("key_sha256")
    @classmethod
    def _is_sha256(cls, value: str) -> str:
        value = value.strip().lower()
        if not _SHA256_HEX.fullmatch(value):
            raise ValueError(
                "key_sha256 must be the 64 hex digits of sha256(key), e.g. "
                '`printf %s "$KEY" | sha256sum`; never the key itself'
            )
        return value


class FailureModes(StrictModel):
    """What happens to a request when the shared counters (Redis) cannot be reached."""

    # Spend is money: by default a request is refused (503) rather than served unmetered.
    spend: Literal["closed", "open"] = "closed"
    rate: Literal["closed", "open"] = "open"


class AuthConfig(StrictModel):
    """``server.auth``: with it every ``/v1`` request needs a key; without it the proxy is open."""

    master_key_envs: tuple[str, ...] = Field(min_length=1)
    keys: dict[str, ClientKeyConfig] = Field(default_factory=dict)
    # Run-time keys and the shared counters; default: ``cache.redis_url`` (else in-process).
    redis_url: str | None = None
    timeout_s: float = Field(0.1, gt=0)
    # How long a replica trusts a looked-up run-time key (a revocation takes at most this long).
    key_cache_ttl_s: float = Field(5.0, ge=0)
    on_redis_error: FailureModes = Field(default_factory=FailureModes)

    def secrets(self, env: Mapping[str, str]) -> list[str]:
        """The master keys, for the secret redactor (client keys are known only as hashes)."""
        return [env[name] for name in self.master_key_envs if env.get(name)]

    @field_validator("master_key_envs")
    @classmethod
    def _env_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not an environment variable NAME; master keys are never "
                    "written in the file"
                )
        return value

    @model_validator(mode="after")
    def _key_names(self) -> AuthConfig:
        for name in self.keys:
            if not KEY_NAME.fullmatch(name):
                raise ValueError(
                    f"key name {name!r}: use letters, digits, '_', '.', '-' (at most 64)"
                )
        hashes = [k.key_sha256 for k in self.keys.values()]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two keys have the same key_sha256")
        return self
