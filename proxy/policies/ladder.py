"""``type: ladder``: many (upstream, n) arms; choose the one maximising reward − λ · cost.

λ is reward per USD of the arm's expected cost (``cost_usd`` in the YAML, else priced from the
upstream), fixed or steered by a budget controller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from proxy.policies.allocation import DecisionProblem
from proxy.policies.base import AdaptivePolicy, PolicyContext, SamplingPlan, read_output
from proxy.policies.decision import Decision
from proxy.policies.overrides import RequestOverrides, body_overrides
from proxy.policies.spec import RerankerConfig, StrictModel
from proxy.wire.tokens import count_message_tokens_async


class LadderArm(StrictModel):
    """One decoding procedure of a ladder: an upstream, a sample count, its predicted reward."""

    name: str
    upstream: str
    n: int = Field(1, ge=1, le=64)
    predictor_output: str
    cost_usd: float | None = Field(None, ge=0)
    reranker: RerankerConfig | None = None
    # Request parameters of this arm (reasoning effort, thinking budget, ...).
    overrides: RequestOverrides | None = None

    def reranker_type(self) -> str | None:
        """The reranker a multi-sample arm uses (``vote`` unless set); ``None`` for one sample."""
        if self.n <= 1:
            return None
        return self.reranker.type if self.reranker else "vote"


class LadderPolicy(AdaptivePolicy):
    """Many arms: choose the arm maximising expected reward − λ · cost."""

    type: Literal["ladder"]
    arms: list[LadderArm] = Field(min_length=2)
    default_arm: str | None = None
    expensive_arms: list[str] | None = None
    #: The arms' overrides replace a client's own values of the same parameters.
    override_client: bool = False

    @model_validator(mode="after")
    def _arms(self) -> LadderPolicy:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError("arm names must be unique")
        if self.default_arm is not None and self.default_arm not in names:
            raise ValueError(f"default_arm {self.default_arm!r} is not one of {names}")
        for name in self.expensive_arms or []:
            if name not in names:
                raise ValueError(f"expensive_arms: {name!r} is not one of {names}")
        if self.threshold is not None:
            raise ValueError("ladder takes lambda or budget, not threshold")
        if self.lambda_ is None and self.budget is None:
            raise ValueError("ladder needs lambda or budget")
        return self

    def rerankers(self) -> list[RerankerConfig]:
        """The rerankers of the arms that have one."""
        return [arm.reranker for arm in self.arms if arm.reranker is not None]

    def override_refs(self) -> list[tuple[str, str, RequestOverrides]]:
        """Every arm that sets overrides."""
        return [
            (f"arms.{i}.overrides", a.upstream, a.overrides)
            for i, a in enumerate(self.arms)
            if a.overrides is not None
        ]

    def upstream_refs(self) -> list[tuple[str, str]]:
        """Every arm's upstream and every arm's judge."""
        refs = [(f"arms.{i}.upstream", a.upstream) for i, a in enumerate(self.arms)]
        refs += [
            (f"arms.{i}.reranker.upstream", a.reranker.upstream)
            for i, a in enumerate(self.arms)
            if a.reranker is not None and a.reranker.upstream
        ]
        return refs

    async def decide(
        self,
        ctx: PolicyContext,
        name: str,
        version: str,
        predictions: Mapping[str, float],
        messages: list[dict[str, Any]],
    ) -> Decision:
        """The arm maximising expected reward − λ · expected cost."""
        prompt_tokens = await count_message_tokens_async(messages)
        lam = await ctx.budgets.current_lambda(name, version, self)
        rewards = [read_output(predictions, arm.predictor_output) for arm in self.arms]
        costs = [
            arm.cost_usd
            if arm.cost_usd is not None
            else ctx.costs.expected_cost_usd(
                arm.upstream, prompt_tokens, arm.n, overrides=body_overrides(arm.overrides)
            )
            for arm in self.arms
        ]
        problem = DecisionProblem(
            tuple(rewards),
            tuple(costs),
            tuple(arm.n for arm in self.arms),
            tuple(self._expensive_flags(costs)),
        )
        lam = lam if lam is not None else (self.lambda_ or 0.0)
        index = problem.choose(lam)
        arm = self.arms[index]
        base = self.arms[_cheapest(costs)]
        gain = rewards[index] - read_output(predictions, base.predictor_output)
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
            reranker=arm.reranker_type(),
            problem=problem,
            arm_index=index,
            overrides=body_overrides(arm.overrides),
            override_client=self.override_client,
        )

    def default_decision(self, name: str, version: str, reason: str) -> Decision:
        """The ``default_arm`` (else the first arm)."""
        arm = next((a for a in self.arms if a.name == self.default_arm), self.arms[0])
        return Decision(
            policy=name,
            policy_version=version,
            arm=arm.name,
            upstream=arm.upstream,
            n=arm.n,
            reranker=arm.reranker_type(),
            fallback_reason=reason,
            overrides=body_overrides(arm.overrides),
            override_client=self.override_client,
        )

    def sampling_plan(self, decision: Decision) -> SamplingPlan:
        """The decided arm's reranker (``vote`` unless set)."""
        arm = next((a for a in self.arms if a.name == decision.arm), None)
        if arm is not None and arm.reranker is not None:
            return SamplingPlan(reranker=arm.reranker)
        return SamplingPlan()

    def _expensive_flags(self, costs: Sequence[float]) -> list[bool]:
        if self.expensive_arms is not None:
            return [arm.name in self.expensive_arms for arm in self.arms]
        cheapest = _cheapest(costs)
        return [i != cheapest for i in range(len(costs))]


def _cheapest(costs: Sequence[float]) -> int:
    return min(range(len(costs)), key=lambda i: (costs[i], i))
