"""Client keys: how they are made and hashed, and who a request turned out to be."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from proxy.auth.spec import ClientLimits

KEY_PREFIX = "sk-ap-"
MASTER_NAME = "master"
UNLIMITED = ClientLimits()


def hash_key(key: str) -> str:
    """The sha256 hex digest under which a key is stored and compared (never the key)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random client key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Client:
    """An authenticated caller: its key's name, limits, and whether it holds a master key."""

    name: str
    limits: ClientLimits
    is_master: bool = False
    # "yaml", "runtime" or "master": where the key was found.
    source: str = "yaml"

    @property
    def metered(self) -> bool:
        """Whether requests of this client touch the shared counters at all."""
        limits = self.limits
        return not self.is_master and (
            limits.requests_per_minute is not None
            or limits.spend_limit_usd_per_day is not None
            or limits.spend_limit_usd_per_month is not None
        )
