"""The executor registry: policy class → the executor that runs its decisions.

Adding a policy type that executes as route or best-of-k needs nothing here beyond its line in
:data:`EXECUTOR_TYPES`; one that executes in a new way is one :class:`~proxy.execute.seam.Executor`
module under ``proxy/execute/``, a field of :class:`Executors` and its line in
:data:`EXECUTOR_TYPES`. No name ties a policy to its executor: the policy's class does, here
only (as :data:`proxy.policies.registry.POLICY_TYPES` ties the YAML ``type`` to the class).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from proxy.execute.best_of_k import BestOfKExecutor
from proxy.execute.cascade import CascadeExecutor
from proxy.execute.route import RouteExecutor
from proxy.execute.seam import Executor
from proxy.execute.sequential import SequentialExecutor
from proxy.observe.metrics import Metrics
from proxy.observe.tracing import NO_STEPS, Steps
from proxy.policies.base import BasePolicy, is_multi_sample
from proxy.policies.best_of_k import BestOfKPolicy
from proxy.policies.cascade import CascadePolicy
from proxy.policies.decision import Decision
from proxy.policies.ladder import LadderPolicy
from proxy.policies.passthrough import PassthroughPolicy
from proxy.policies.route import RoutePolicy
from proxy.upstream.client import UpstreamClient
from proxy.upstream.pricing import CostModel


@dataclass(frozen=True, slots=True)
class Executors:
    """Every executor of one application, sharing its upstream client (built once per app)."""

    route: RouteExecutor
    best_of_k: BestOfKExecutor
    sequential: SequentialExecutor
    cascade: CascadeExecutor

    @classmethod
    def build(
        cls,
        upstreams: UpstreamClient,
        session: aiohttp.ClientSession,
        costs: CostModel,
        metrics: Metrics,
        env: Mapping[str, str],
        *,
        steps: Steps | None = None,
    ) -> Executors:
        """The executors over ``upstreams`` (``session`` also carries reward-model calls);
        ``steps``: tracing's child spans (``None``: tracing off, no span is made)."""
        route = RouteExecutor(upstreams, costs, metrics)
        sampler = BestOfKExecutor(
            upstreams, session, costs, metrics, route.account, env, route=route, steps=steps
        )
        return cls(
            route=route,
            best_of_k=sampler,
            sequential=SequentialExecutor(sampler, metrics, steps=steps or NO_STEPS),
            cascade=CascadeExecutor(upstreams, route, costs, metrics, steps=steps or NO_STEPS),
        )

    def by_decision(self, decision: Decision) -> Executor:
        """Best-of-k for a multi-sample (or reranked) decision, else route."""
        return self.best_of_k if is_multi_sample(decision) else self.route

    def for_request(self, policy: BasePolicy | None, decision: Decision) -> Executor:
        """The executor of ``decision`` under ``policy`` (``None``: a bare upstream model)."""
        if policy is None:
            return self.by_decision(decision)
        # The most derived registered class wins, so a subclass runs as its parent unless listed.
        for kind in type(policy).__mro__:
            choose = EXECUTOR_TYPES.get(kind)
            if choose is not None:
                return choose(self, policy, decision)
        raise TypeError(f"no executor is registered for {type(policy).__name__}")


def _by_decision(executors: Executors, policy: BasePolicy, decision: Decision) -> Executor:
    return executors.by_decision(decision)


def _best_of_k(executors: Executors, policy: BestOfKPolicy, decision: Decision) -> Executor:
    # A ``sequential:`` section draws in rounds until its stop rule fires.
    return (
        executors.sequential if policy.sequential is not None else executors.by_decision(decision)
    )


def _cascade(executors: Executors, policy: CascadePolicy, decision: Decision) -> Executor:
    return executors.cascade


# ``Any``: each chooser takes the class it is registered under (the lookup guarantees it).
EXECUTOR_TYPES: dict[type[BasePolicy], Callable[[Executors, Any, Decision], Executor]] = {
    RoutePolicy: _by_decision,
    PassthroughPolicy: _by_decision,
    LadderPolicy: _by_decision,
    BestOfKPolicy: _best_of_k,
    CascadePolicy: _cascade,
}
