"""The budget controllers of budgeted policies, one per policy section.

A policy with a ``budget`` has its λ found online by a :class:`BudgetController`; this keeps one
controller per policy (a new one when the policy's section, hence its version, changes), gives
policies their current λ, and feeds finished requests back.
"""

from __future__ import annotations

from typing import Any, Protocol

from proxy.policies.base import BasePolicy
from proxy.policies.budget.controller import BudgetController
from proxy.policies.decision import Decision


class BudgetMetrics(Protocol):
    """Budget gauges (implemented by :class:`proxy.observe.metrics.Metrics`)."""

    def set_budget(self, policy: str, lambda_: float, target: float, realised: float) -> None: ...


class BudgetControllers:
    """Owns the budget controllers of every budgeted policy."""

    def __init__(self, *, redis: Any | None = None, metrics: BudgetMetrics | None = None) -> None:
        self._redis = redis
        self._metrics = metrics
        self._controllers: dict[str, tuple[str, BudgetController]] = {}

    def set_redis(self, redis: Any | None) -> None:
        """Share budget state through this Redis client (``None``: per-process state)."""
        self._redis = redis

    async def flush(self) -> None:
        """Write every budget observation still queued for Redis (before its client closes)."""
        for _, controller in list(self._controllers.values()):
            await controller.flush()

    def controller(self, name: str, version: str, policy: BasePolicy) -> BudgetController | None:
        """The policy's budget controller (a new one when the policy's section changed)."""
        budget = policy.budget_config()
        if budget is None:
            return None
        held = self._controllers.get(name)
        if held is None or held[0] != version:
            controller = BudgetController(
                budget.kind,
                budget.target,
                redis=self._redis,
                key_prefix=f"adaptive:budget:{name}:{version}",
                window=budget.window,
            )
            self._controllers[name] = (version, controller)
            return controller
        return held[1]

    async def current_lambda(self, name: str, version: str, policy: BasePolicy) -> float | None:
        """λ of a budgeted policy now (``None``: the policy has no budget)."""
        controller = self.controller(name, version, policy)
        if controller is None:
            return None
        return await controller.current_lambda()

    async def resolve(self, name: str) -> float | None:
        """Re-solve λ of policy ``name`` now (its predictor changed: a learned head was swapped
        in); ``None`` when it has no controller yet. The window keeps the problems decided so
        far, so λ follows the new head as its decisions replace them."""
        held = self._controllers.get(name)
        if held is None:
            return None
        return await held[1].refresh()

    async def budget_snapshot(self, name: str) -> dict[str, Any] | None:
        """λ, target and realised rate of a budgeted policy (``None`` otherwise)."""
        held = self._controllers.get(name)
        if held is None:
            return None
        return await held[1].snapshot()

    async def observe(self, decision: Decision, *, cost_usd: float, n_samples: int) -> None:
        """Feed a finished request to its policy's budget controller."""
        held = self._controllers.get(decision.policy)
        if held is None or decision.problem is None or decision.arm_index is None:
            return
        controller = held[1]
        expensive = bool(decision.problem.expensive[decision.arm_index])
        await controller.observe(
            decision.problem,
            decision.arm_index,
            cost_usd=cost_usd,
            n_samples=n_samples,
            expensive=expensive,
        )
        if self._metrics is not None:
            snap = await controller.snapshot()
            realised = snap.get("realised")
            self._metrics.set_budget(
                decision.policy,
                float(snap["lambda"]),
                controller.target,
                float(realised) if realised is not None else float("nan"),
            )
