"""Shutdown state of one application: draining, and the handler tasks still in flight."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Drain:
    """``draining`` turns readiness 503 and refuses new requests; the handler tasks in flight
    are tracked so that those still running when the grace period ends get a clean error."""

    draining: bool = False
    grace_expired: bool = False
    in_flight: set[asyncio.Task[Any]] = field(default_factory=set)


# Set by create_app; read by the error middleware, readiness and the runner's cleanup.
DRAIN = web.AppKey("adaptive_drain", Drain)
