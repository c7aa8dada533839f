"""Decisions of the adaptive policies beyond a fixed-threshold route: ``best_of_k``, ``ladder``,
and any policy with a ``budget`` (its λ found online by a :class:`BudgetController`).

Units of λ. A fixed ``lambda`` prices reward against cost: for ``route`` and ``ladder`` the cost
is the expected USD of the arm (``gain ≥ λ · Δcost_usd``); for ``best_of_k`` it is the number of
samples (one more sample is worth it iff its marginal expected reward exceeds λ), because all
samples come from one upstream. With a ``budget`` the controller solves for λ over USD costs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from proxy.config import BestOfKPolicy, LadderPolicy, RoutePolicy
from proxy.policies.allocation import (
    DecisionProblem,
    choose_n,
    expected_reward_best_of_n,
    greedy_allocate,
    marginal_gains,
)
from proxy.policies.base import Decision
from proxy.policies.budget import BudgetController
from proxy.policies.route import decide_route, default_route, read_output
from proxy.pricing import CostModel
from proxy.tokens import count_message_tokens

log = logging.getLogger("adaptive_proxy.engine")

Policy = RoutePolicy | BestOfKPolicy | LadderPolicy


class AllocationEngine:
    """Turns predictions into decisions for adaptive policies; owns their budget controllers."""

    def __init__(
        self, costs: CostModel, *, redis: Any | None = None, budget_metrics: Any | None = None
    ) -> None:
        self._costs = costs
        self._redis = redis
        self._metrics = budget_metrics
        self._controllers: dict[str, tuple[str, BudgetController]] = {}

    def set_redis(self, redis: Any | None) -> None:
        """Share budget state through this Redis client (``None``: per-process state)."""
        self._redis = redis

    async def flush(self) -> None:
        """Write every budget observation still queued for Redis (before its client closes)."""
        for _, controller in list(self._controllers.values()):
            await controller.flush()

    def is_budgeted(self, policy: Any) -> bool:
        """Whether the policy's λ moves (so cached decisions must be re-decided)."""
        return getattr(policy, "budget", None) is not None

    def controller(self, name: str, version: str, policy: Any) -> BudgetController | None:
        """The policy's budget controller (a new one when the policy's section changed)."""
        budget = getattr(policy, "budget", None)
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

    async def budget_snapshot(self, name: str) -> dict[str, Any] | None:
        """λ, target and realised rate of a budgeted policy (``None`` otherwise)."""
        held = self._controllers.get(name)
        if held is None:
            return None
        return await held[1].snapshot()

    async def _lambda(self, name: str, version: str, policy: Any) -> float | None:
        controller = self.controller(name, version, policy)
        if controller is None:
            return None
        return await controller.current_lambda()

    async def decide(
        self,
        name: str,
        version: str,
        policy: Any,
        predictions: Mapping[str, float],
        messages: list[dict[str, Any]],
        body: Mapping[str, Any],
    ) -> Decision:
        """The decision of an adaptive policy for one request."""
        prompt_tokens = count_message_tokens(messages)
        lam = await self._lambda(name, version, policy)
        if isinstance(policy, RoutePolicy):
            return self._route(name, version, policy, predictions, prompt_tokens, lam)
        if isinstance(policy, BestOfKPolicy):
            return self._best_of_k(name, version, policy, predictions, prompt_tokens, lam)
        if isinstance(policy, LadderPolicy):
            return self._ladder(name, version, policy, predictions, prompt_tokens, lam)
        raise ValueError(f"policy type {policy.type!r} is not adaptive")

    def _route(
        self,
        name: str,
        version: str,
        policy: RoutePolicy,
        predictions: Mapping[str, float],
        prompt_tokens: int,
        lam: float | None,
    ) -> Decision:
        cost_cheap = self._costs.expected_cost_usd(policy.cheap, prompt_tokens)
        cost_expensive = self._costs.expected_cost_usd(policy.expensive, prompt_tokens)
        decision = decide_route(
            name,
            version,
            policy,
            predictions,
            cost_cheap_usd=cost_cheap,
            cost_expensive_usd=cost_expensive,
            lambda_=lam if lam is not None else (policy.lambda_ or 0.0),
        )
        problem = DecisionProblem.route(
            0.0, decision.gain or 0.0, cost_cheap=cost_cheap, cost_expensive=cost_expensive
        )
        return replace(decision, problem=problem, arm_index=int(decision.arm == "expensive"))

    def _best_of_k(
        self,
        name: str,
        version: str,
        policy: BestOfKPolicy,
        predictions: Mapping[str, float],
        prompt_tokens: int,
        lam: float | None,
    ) -> Decision:
        p = min(max(read_output(predictions, policy.predictor_output), 0.0), 1.0)
        efficiency = policy.reranker.efficiency
        cost_usd = self._costs.expected_cost_usd(policy.upstream, prompt_tokens)
        problem = None
        if lam is not None:  # budget: λ per USD
            n = choose_n(
                p,
                n_min=policy.n_min,
                n_max=policy.n_max,
                lambda_=lam,
                cost_per_sample=cost_usd,
                efficiency=efficiency,
            )
            problem = DecisionProblem.best_of_k(
                p,
                n_min=policy.n_min,
                n_max=policy.n_max,
                cost_per_sample=cost_usd,
                efficiency=efficiency,
            )
        elif policy.lambda_ is not None or policy.threshold is not None:
            price = policy.lambda_ if policy.lambda_ is not None else policy.threshold
            n = choose_n(
                p,
                n_min=policy.n_min,
                n_max=policy.n_max,
                lambda_=price or 0.0,
                cost_per_sample=1.0,
                efficiency=efficiency,
            )
        else:
            n = policy.default_n or policy.n_min
        gain = expected_reward_best_of_n(p, n, efficiency) - expected_reward_best_of_n(
            p, 1, efficiency
        )
        return Decision(
            policy=name,
            policy_version=version,
            arm=f"best_of_{n}",
            upstream=policy.upstream,
            n=n,
            predictions=dict(predictions),
            gain=gain,
            threshold=policy.threshold,
            lambda_=lam if lam is not None else policy.lambda_,
            expected_cost_usd=n * cost_usd,
            reranker=policy.reranker.type,
            problem=problem,
            arm_index=None if problem is None else n - policy.n_min,
        )

    def _ladder(
        self,
        name: str,
        version: str,
        policy: LadderPolicy,
        predictions: Mapping[str, float],
        prompt_tokens: int,
        lam: float | None,
    ) -> Decision:
        rewards = [read_output(predictions, arm.predictor_output) for arm in policy.arms]
        costs = [
            arm.cost_usd
            if arm.cost_usd is not None
            else self._costs.expected_cost_usd(arm.upstream, prompt_tokens, arm.n)
            for arm in policy.arms
        ]
        expensive = _expensive_flags(policy, costs)
        problem = DecisionProblem(
            tuple(rewards), tuple(costs), tuple(arm.n for arm in policy.arms), tuple(expensive)
        )
        lam = lam if lam is not None else (policy.lambda_ or 0.0)
        index = problem.choose(lam)
        arm = policy.arms[index]
        base = policy.arms[_cheapest(costs)]
        gain = rewards[index] - read_output(predictions, base.predictor_output)
        reranker = (arm.reranker.type if arm.reranker else "vote") if arm.n > 1 else None
        return Decision(
            policy=name,
            policy_version=version,
            arm=arm.name,
            upstream=arm.upstream,
            n=arm.n,
            predictions=dict(predictions),
            gain=gain,
            lambda_=lam,
            expected_cost_usd=costs[index],
            reranker=reranker,
            problem=problem,
            arm_index=index,
        )

    def default(self, name: str, version: str, policy: Any, reason: str) -> Decision:
        """The policy's default arm, used when prediction fails."""
        if isinstance(policy, RoutePolicy):
            return default_route(name, version, policy, reason)
        if isinstance(policy, BestOfKPolicy):
            n = policy.default_n or policy.n_min
            return Decision(
                policy=name,
                policy_version=version,
                arm=f"best_of_{n}",
                upstream=policy.upstream,
                n=n,
                reranker=policy.reranker.type,
                fallback_reason=reason,
            )
        if isinstance(policy, LadderPolicy):
            arm = next((a for a in policy.arms if a.name == policy.default_arm), policy.arms[0])
            reranker = (arm.reranker.type if arm.reranker else "vote") if arm.n > 1 else None
            return Decision(
                policy=name,
                policy_version=version,
                arm=arm.name,
                upstream=arm.upstream,
                n=arm.n,
                reranker=reranker,
                fallback_reason=reason,
            )
        raise ValueError(f"policy type {policy.type!r} is not adaptive")

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

    def allocate(
        self,
        policy: Any,
        predictions: Sequence[Mapping[str, float]],
        prompt_tokens: Sequence[int],
        budget: float,
        unit: str,
    ) -> list[dict[str, Any]]:
        """The paper's batch allocation of ``budget`` (samples or USD) over prompts."""
        if isinstance(policy, BestOfKPolicy):
            ps = [min(max(read_output(p, policy.predictor_output), 0.0), 1.0) for p in predictions]
            eff = policy.reranker.efficiency
            gains = [marginal_gains(p, policy.n_max, efficiency=eff) for p in ps]
            costs = None
            if unit == "usd":
                costs = [
                    [self._costs.expected_cost_usd(policy.upstream, t)] * policy.n_max
                    for t in prompt_tokens
                ]
            alloc = greedy_allocate(gains, costs, budget, n_min=policy.n_min)
            return [
                {
                    "n": n,
                    "gain": expected_reward_best_of_n(p, n, eff) - (p if n else 0.0),
                    "expected_reward": expected_reward_best_of_n(p, n, eff),
                    "p": p,
                }
                for n, p in zip(alloc, ps, strict=True)
            ]
        if isinstance(policy, RoutePolicy):
            gains = [[max(read_output(p, policy.predictor_output), 0.0)] for p in predictions]
            costs = None
            if unit == "usd":
                costs = [
                    [
                        max(
                            self._costs.expected_cost_usd(policy.expensive, t)
                            - self._costs.expected_cost_usd(policy.cheap, t),
                            1e-12,
                        )
                    ]
                    for t in prompt_tokens
                ]
            alloc = greedy_allocate(gains, costs, budget)
            return [
                {"n": n, "arm": "expensive" if n else "cheap", "gain": g[0]}
                for n, g in zip(alloc, gains, strict=True)
            ]
        raise ValueError(f"allocation needs a route or best_of_k policy, not {policy.type!r}")


def _cheapest(costs: Sequence[float]) -> int:
    return min(range(len(costs)), key=lambda i: (costs[i], i))


def _expensive_flags(policy: LadderPolicy, costs: Sequence[float]) -> list[bool]:
    if policy.expensive_arms is not None:
        return [arm.name in policy.expensive_arms for arm in policy.arms]
    cheapest = _cheapest(costs)
    return [i != cheapest for i in range(len(costs))]
