"""Typed application keys: each resource of the proxy under its own ``web.AppKey``.

Keys set in :func:`proxy.http.app.create_app` exist from the start; the others are set by the
``cleanup_ctx`` that owns the resource when the app starts (``app.get(KEY)`` is ``None`` until
then). One set per application, never global.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from proxy.auth.guard import Authenticator
from proxy.auth.keys import Client
from proxy.config.reload import ConfigHolder
from proxy.config.schema import Config
from proxy.decide.cache import DecisionCache
from proxy.decide.decider import Decider
from proxy.decide.prediction import Predictor
from proxy.execute.registry import Executors
from proxy.learn.explore import ExploreCounters, Explorer
from proxy.learn.live import LiveHeads
from proxy.learn.log import OutcomeLog
from proxy.observe.access_log import RequestRecord
from proxy.observe.metrics import Metrics
from proxy.policies.base import PolicyContext
from proxy.policies.budget.controllers import BudgetControllers
from proxy.upstream.client import UpstreamClient
from proxy.upstream.pricing import CostModel


class LearningParts(Protocol):
    """What handlers read of the learning loop (:class:`proxy.http.outcomes.LearningRuntime`)."""

    log: OutcomeLog
    heads: LiveHeads
    config: Config
    policies: frozenset[str]
    #: The exploration budget's Redis client (``None``: the budget is counted in process).
    budget_redis: Any
    #: Exploration's Prometheus series (one set per app).
    explore_counters: ExploreCounters

    def update(self, config: Config) -> None:
        """Follow a reloaded config."""
        ...

    async def aclose(self) -> None:
        """Stop the loop and close the store."""
        ...


# Set by create_app.
CONFIG = web.AppKey("adaptive_config", ConfigHolder)
METRICS = web.AppKey("adaptive_metrics", Metrics)
COSTS = web.AppKey("adaptive_costs", CostModel)
BUDGETS = web.AppKey("adaptive_budgets", BudgetControllers)
POLICY_CONTEXT = web.AppKey("adaptive_policy_context", PolicyContext)
# Set by their cleanup contexts when the app starts.
UPSTREAMS = web.AppKey("adaptive_upstreams", UpstreamClient)
# Every executor; ``for_request`` picks the one a policy's class registers.
EXECUTORS = web.AppKey("adaptive_executors", Executors)
CACHE = web.AppKey("adaptive_cache", DecisionCache)
DECIDER = web.AppKey("adaptive_decider", Decider)
# ``None`` once loaded means "no predictor configured" (every policy uses its default arm).
PREDICTOR: web.AppKey[Predictor | None] = web.AppKey("adaptive_predictor")
# ``None`` once started means "no server.auth": the proxy is open.
AUTH: web.AppKey[Authenticator | None] = web.AppKey("adaptive_auth")

# Per request: the authenticated client (auth on only) and the access-log record.
CLIENT = web.RequestKey("adaptive_client", Client)
RECORD = web.RequestKey("adaptive_record", RequestRecord)
# Set when ``learning`` exploration is on (``None`` or absent: no request is explored).
EXPLORER: web.AppKey[Explorer | None] = web.AppKey("adaptive_explorer")


@dataclass
class Learning:
    """The learning loop of one app, its fields replaced on a reload (a started app's keys
    cannot change): ``runtime`` is ``None`` while no policy has ``learn: true``; ``explorer`` is
    the one built from ``learning:`` (``None``: no exploration). An explorer set as
    ``app[EXPLORER]`` before the app starts takes its place (tests)."""

    runtime: LearningParts | None = None
    explorer: Explorer | None = None


# Set by create_app; its fields by the learning loop's cleanup context and reloads.
LEARNING = web.AppKey("adaptive_learning", Learning)
