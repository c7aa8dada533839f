"""``type: route``: send a request to the expensive upstream iff its predicted gain pays.

The rule is the paper's threshold on predicted marginal reward: ``gain ≥ threshold``, where the
threshold is fixed, or derived from a price of compute λ as ``λ · (cost_expensive − cost_cheap)``
(λ in reward units per USD), or λ is steered online by a budget controller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from pydantic import model_validator

from proxy.policies.allocation import DecisionProblem, greedy_allocate, route_expensive
from proxy.policies.base import AdaptivePolicy, PolicyContext, read_output
from proxy.policies.decision import Decision
from proxy.policies.overrides import ArmRef, ArmTarget, RequestOverrides, target_of
from proxy.wire.tokens import count_message_tokens_async


class RoutePolicy(AdaptivePolicy):
    """Two arms: go ``expensive`` iff the predicted gain clears the threshold (or λ · Δcost)."""

    type: Literal["route"]
    # An upstream name, or ``{upstream, overrides}``: one model at two efforts is a route.
    cheap: ArmRef
    expensive: ArmRef
    predictor_output: str = "gain"
    default_arm: Literal["cheap", "expensive"] = "cheap"
    #: The arms' overrides replace a client's own values of the same parameters.
    override_client: bool = False

    plans_allocation = True

    @model_validator(mode="after")
    def _has_rule(self) -> RoutePolicy:
        if self.threshold is None and self.lambda_ is None and self.budget is None:
            raise ValueError("route needs one of threshold, lambda or budget")
        if self.budget is not None and self.budget.kind == "mean_samples":
            raise ValueError("budget kind 'mean_samples' applies to best_of_k and ladder policies")
        return self

    @property
    def cheap_target(self) -> ArmTarget:
        """The cheap arm as an upstream and its overrides."""
        return target_of(self.cheap)

    @property
    def expensive_target(self) -> ArmTarget:
        """The expensive arm as an upstream and its overrides."""
        return target_of(self.expensive)

    def upstream_refs(self) -> list[tuple[str, str]]:
        """The cheap and the expensive upstream."""
        return [
            (_ref_path("cheap", self.cheap), self.cheap_target.upstream),
            (_ref_path("expensive", self.expensive), self.expensive_target.upstream),
        ]

    def override_refs(self) -> list[tuple[str, str, RequestOverrides]]:
        """The arms written as ``{upstream, overrides}``."""
        return [
            (f"{key}.overrides", arm.upstream, arm.overrides)
            for key, arm in (("cheap", self.cheap), ("expensive", self.expensive))
            if isinstance(arm, ArmTarget)
        ]

    def arm_cost_usd(self, ctx: PolicyContext, arm: str, prompt_tokens: int) -> float:
        """Expected cost of arm ``cheap`` or ``expensive`` (learned per upstream and overrides)."""
        target = self.expensive_target if arm == "expensive" else self.cheap_target
        return ctx.costs.expected_cost_usd(
            target.upstream, prompt_tokens, overrides=target.overrides.as_body()
        )

    def arm_decision(self, decision: Decision) -> Decision:
        """``decision`` carrying its arm's upstream and overrides."""
        target = self.expensive_target if decision.arm == "expensive" else self.cheap_target
        overrides = target.overrides.as_body()
        if not overrides and decision.upstream == target.upstream:
            return decision
        return replace(
            decision,
            upstream=target.upstream,
            overrides=overrides,
            override_client=self.override_client,
        )

    async def decide(
        self,
        ctx: PolicyContext,
        name: str,
        version: str,
        predictions: Mapping[str, float],
        messages: list[dict[str, Any]],
    ) -> Decision:
        """Cheap or expensive for one request."""
        if self.budget is None:
            # A fixed threshold does not need the costs to decide, but the decision reports
            # its expected cost (paid on a cache miss only: the cached decision keeps it).
            prompt_tokens = await count_message_tokens_async(messages)
            cost_cheap = self.arm_cost_usd(ctx, "cheap", prompt_tokens)
            cost_expensive = self.arm_cost_usd(ctx, "expensive", prompt_tokens)
            return decide_route(
                name,
                version,
                self,
                predictions,
                cost_cheap_usd=cost_cheap,
                cost_expensive_usd=cost_expensive,
            )
        prompt_tokens = await count_message_tokens_async(messages)
        lam = await ctx.budgets.current_lambda(name, version, self)
        cost_cheap = self.arm_cost_usd(ctx, "cheap", prompt_tokens)
        cost_expensive = self.arm_cost_usd(ctx, "expensive", prompt_tokens)
        decision = decide_route(
            name,
            version,
            self,
            predictions,
            cost_cheap_usd=cost_cheap,
            cost_expensive_usd=cost_expensive,
            lambda_=lam if lam is not None else (self.lambda_ or 0.0),
        )
        # What the budget controller replays: gain as the expensive arm's reward over cheap's.
        problem = DecisionProblem.route(
            0.0, decision.gain or 0.0, cost_cheap=cost_cheap, cost_expensive=cost_expensive
        )
        return replace(decision, problem=problem, arm_index=int(decision.arm == "expensive"))

    def default_decision(self, name: str, version: str, reason: str) -> Decision:
        """The ``default_arm``, used when prediction or the cache fails."""
        return self.arm_decision(
            Decision(
                policy=name,
                policy_version=version,
                arm=self.default_arm,
                upstream=self.cheap_target.upstream,
                fallback_reason=reason,
            )
        )

    def allocate(
        self,
        ctx: PolicyContext,
        predictions: Sequence[Mapping[str, float]],
        prompt_tokens: Sequence[int],
        budget: float,
        unit: str,
    ) -> list[dict[str, Any]]:
        """Which prompts of a batch go expensive under a total budget (count or USD)."""
        gains = [[max(read_output(p, self.predictor_output), 0.0)] for p in predictions]
        costs = None
        if unit == "usd":
            costs = [
                [
                    max(
                        self.arm_cost_usd(ctx, "expensive", t) - self.arm_cost_usd(ctx, "cheap", t),
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


def route_threshold(
    policy: RoutePolicy, *, lambda_: float | None, cost_cheap_usd: float, cost_expensive_usd: float
) -> float:
    """The gain threshold in force: fixed, or λ times the extra cost of the expensive arm."""
    if policy.threshold is not None:
        return policy.threshold
    lam = lambda_ if lambda_ is not None else (policy.lambda_ or 0.0)
    return lam * max(cost_expensive_usd - cost_cheap_usd, 0.0)


def decide_route(
    name: str,
    version: str,
    policy: RoutePolicy,
    predictions: Mapping[str, float],
    *,
    cost_cheap_usd: float,
    cost_expensive_usd: float,
    lambda_: float | None = None,
) -> Decision:
    """Choose ``cheap`` or ``expensive`` for one request from its predictions."""
    gain = read_output(predictions, policy.predictor_output)
    threshold = route_threshold(
        policy,
        lambda_=lambda_,
        cost_cheap_usd=cost_cheap_usd,
        cost_expensive_usd=cost_expensive_usd,
    )
    expensive = route_expensive(gain, threshold=threshold)
    return policy.arm_decision(
        Decision(
            policy=name,
            policy_version=version,
            arm="expensive" if expensive else "cheap",
            upstream=policy.cheap_target.upstream,
            predictions=dict(predictions),
            gain=gain,
            threshold=threshold,
            lambda_=lambda_ if lambda_ is not None else policy.lambda_,
            expected_cost_usd=cost_expensive_usd if expensive else cost_cheap_usd,
        )
    )


def _ref_path(key: str, arm: str | ArmTarget) -> str:
    """Where an arm's upstream is written: ``cheap`` or ``cheap.upstream``."""
    return key if isinstance(arm, str) else f"{key}.upstream"
