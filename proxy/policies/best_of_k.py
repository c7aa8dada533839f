"""``type: best_of_k``: draw n samples from one upstream, n chosen per prompt; keep the best.

Units of λ: a fixed ``lambda`` (or ``threshold``) is reward per sample — one more sample is worth
it iff its marginal expected reward exceeds λ, because all samples come from one upstream. With a
``budget`` the controller solves for λ over USD costs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from proxy.policies.allocation import (
    DecisionProblem,
    allocate_batch,
    choose_n,
    expected_reward_best_of_n,
)
from proxy.policies.base import Decision
from proxy.policies.policy import AdaptivePolicy, PolicyContext, SamplingPlan, read_output
from proxy.policies.spec import RerankerConfig
from proxy.tokens import count_message_tokens


class BestOfKPolicy(AdaptivePolicy):
    """Draw n samples from one upstream (n chosen per prompt) and keep the reranker's pick."""

    type: Literal["best_of_k"]
    upstream: str
    n_min: int = Field(1, ge=1)
    n_max: int = Field(8, ge=1, le=64)
    default_n: int | None = Field(None, ge=1)
    predictor_output: str = "p_weak"
    use_upstream_n: bool | None = None
    sampling: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0.7})
    reranker: RerankerConfig = Field(default_factory=RerankerConfig)

    plans_allocation = True

    @model_validator(mode="after")
    def _bounds(self) -> BestOfKPolicy:
        if self.n_min > self.n_max:
            raise ValueError(f"n_min ({self.n_min}) must be ≤ n_max ({self.n_max})")
        if self.default_n is not None and not self.n_min <= self.default_n <= self.n_max:
            raise ValueError("default_n must lie in [n_min, n_max]")
        if self.budget is not None and self.budget.kind == "fraction_expensive":
            raise ValueError(
                "best_of_k has no expensive arm: use budget kind mean_samples or usd_per_hour"
            )
        return self

    def upstream_refs(self) -> list[tuple[str, str]]:
        """The sampled upstream and the judge, if any."""
        refs = [("upstream", self.upstream)]
        if self.reranker.upstream:
            refs.append(("reranker.upstream", self.reranker.upstream))
        return refs

    def fallback_upstream(self) -> str | None:
        """None: samples already tolerate failures (one arriving sample suffices)."""
        return None

    async def decide(
        self,
        ctx: PolicyContext,
        name: str,
        version: str,
        predictions: Mapping[str, float],
        messages: list[dict[str, Any]],
    ) -> Decision:
        """The n in [n_min, n_max] maximising E[R(n)] − λ · cost(n)."""
        prompt_tokens = count_message_tokens(messages)
        lam = await ctx.budgets.current_lambda(name, version, self)
        p = min(max(read_output(predictions, self.predictor_output), 0.0), 1.0)
        efficiency = self.reranker.efficiency
        cost_usd = ctx.costs.expected_cost_usd(self.upstream, prompt_tokens)
        problem = None
        if lam is not None:  # budget: λ per USD
            n = choose_n(
                p,
                n_min=self.n_min,
                n_max=self.n_max,
                lambda_=lam,
                cost_per_sample=cost_usd,
                efficiency=efficiency,
            )
            problem = DecisionProblem.best_of_k(
                p,
                n_min=self.n_min,
                n_max=self.n_max,
                cost_per_sample=cost_usd,
                efficiency=efficiency,
            )
        elif self.lambda_ is not None or self.threshold is not None:
            price = self.lambda_ if self.lambda_ is not None else self.threshold
            n = choose_n(
                p,
                n_min=self.n_min,
                n_max=self.n_max,
                lambda_=price or 0.0,
                cost_per_sample=1.0,
                efficiency=efficiency,
            )
        else:
            n = self.default_n or self.n_min
        gain = expected_reward_best_of_n(p, n, efficiency) - expected_reward_best_of_n(
            p, 1, efficiency
        )
        return Decision(
            policy=name,
            policy_version=version,
            arm=f"best_of_{n}",
            upstream=self.upstream,
            n=n,
            predictions=dict(predictions),
            gain=gain,
            threshold=self.threshold,
            lambda_=lam if lam is not None else self.lambda_,
            expected_cost_usd=n * cost_usd,
            reranker=self.reranker.type,
            problem=problem,
            arm_index=None if problem is None else n - self.n_min,
        )

    def default_decision(self, name: str, version: str, reason: str) -> Decision:
        """``default_n`` (else ``n_min``) samples."""
        n = self.default_n or self.n_min
        return Decision(
            policy=name,
            policy_version=version,
            arm=f"best_of_{n}",
            upstream=self.upstream,
            n=n,
            reranker=self.reranker.type,
            fallback_reason=reason,
        )

    def sampling_plan(self, decision: Decision) -> SamplingPlan:
        """The policy's reranker, sampling parameters and ``use_upstream_n``."""
        return SamplingPlan(
            reranker=self.reranker, sampling=self.sampling, use_upstream_n=self.use_upstream_n
        )

    def allocate(
        self,
        ctx: PolicyContext,
        predictions: Sequence[Mapping[str, float]],
        prompt_tokens: Sequence[int],
        budget: float,
        unit: str,
    ) -> list[dict[str, Any]]:
        """n per prompt of a batch under a total budget (samples or USD)."""
        ps = [min(max(read_output(p, self.predictor_output), 0.0), 1.0) for p in predictions]
        cost_per_sample = None
        if unit == "usd":
            cost_per_sample = [ctx.costs.expected_cost_usd(self.upstream, t) for t in prompt_tokens]
        plan = allocate_batch(
            ps,
            budget,
            n_min=self.n_min,
            n_max=self.n_max,
            efficiency=self.reranker.efficiency,
            cost_per_sample=cost_per_sample,
        )
        return [
            {"n": a.n, "gain": a.gain, "expected_reward": a.expected_reward, "p": p}
            for a, p in zip(plan, ps, strict=True)
        ]
