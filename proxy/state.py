"""Per-application runtime state, reachable from handlers through ``request.app[STATE]``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from proxy.cache import DecisionCache
from proxy.decider import Decider
from proxy.executor import RouteExecutor
from proxy.metrics import Metrics
from proxy.policies.budgets import BudgetControllers
from proxy.policies.policy import PolicyContext
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
    budgets: BudgetControllers
    policy_context: PolicyContext
    predictor: Predictor | None = None
    cache: DecisionCache | None = None
    upstreams: UpstreamClient | None = None
    executor: RouteExecutor | None = None
    decider: Decider | None = None
    predictor_ready: bool = False

    @property
    def snapshot(self) -> Snapshot:
        """The config in force."""
        return self.holder.snapshot


STATE = web.AppKey("adaptive_state", ProxyState)
