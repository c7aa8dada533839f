"""Per-application runtime state, reachable from handlers through ``request.app[STATE]``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from proxy.cache import DecisionCache
from proxy.decider import Decider
from proxy.executor import RouteExecutor
from proxy.metrics import Metrics
from proxy.policies.engine import AllocationEngine
from proxy.prediction import Predictor
from proxy.pricing import CostModel
from proxy.reload import ConfigHolder, Snapshot
from proxy.upstream import UpstreamClient


@dataclass
class ProxyState:
    """Everything a request needs, built at startup; one per application, never global."""

    holder: ConfigHolder
    metrics: Metrics
    costs: CostModel
    env: Mapping[str, str]
    predictor: Predictor | None = None
    cache: DecisionCache | None = None
    upstreams: UpstreamClient | None = None
    executor: RouteExecutor | None = None
    decider: Decider | None = None
    engine: AllocationEngine | None = None
    predictor_ready: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    # Shutdown: ``draining`` turns readiness 503; the handler tasks in flight are tracked so
    # those still running when the grace period ends can be ended with a clean error.
    draining: bool = False
    grace_expired: bool = False
    in_flight: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def snapshot(self) -> Snapshot:
        """The config in force."""
        return self.holder.snapshot


STATE = web.AppKey("adaptive_state", ProxyState)
