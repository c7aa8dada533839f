"""``type: best_of_k``: draw n samples from one upstream, n chosen per prompt; keep the best.

Units of λ: a fixed ``lambda`` (or ``threshold``) is reward per sample — one more sample is worth
it iff its marginal expected reward exceeds λ, because all samples come from one upstream. With a
``budget`` the controller solves for λ over USD costs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import Field, model_validator

from proxy.policies.allocation import (
    DecisionProblem,
    allocate_batch,
    choose_n,
    expected_reward_best_of_n,
)
from proxy.policies.base import (
    AdaptivePolicy,
    PolicyContext,
    SamplingPlan,
    is_multi_sample,
    read_output,
)
from proxy.policies.decision import Decision
from proxy.policies.spec import RerankerConfig, StrictModel
from proxy.policies.stopping import StopRule, VerifierStop, VoteStop, first_round_n
from proxy.wire.tokens import count_message_tokens_async


class StopConfig(StrictModel):
    """When sequential sampling stops: a verifier accepts a sample, or the vote is settled."""

    kind: Literal["verifier", "vote"]
    accept_score: float | None = None
    confidence: float = Field(0.9, gt=0.5, lt=1)
    min_samples: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _verifier_threshold(self) -> StopConfig:
        if self.kind == "verifier" and self.accept_score is None:
            raise ValueError("stop kind 'verifier' needs accept_score")
        return self

    def rule(self) -> StopRule:
        """The stop rule of :mod:`proxy.policies.stopping` this section describes."""
        if self.kind == "verifier":
            assert self.accept_score is not None
            return VerifierStop(self.accept_score)
        return VoteStop(self.confidence, self.min_samples)


class SequentialConfig(StrictModel):
    """Draw in rounds and stop as soon as the answer is settled (``best_of_k.sequential``)."""

    first_n: int | Literal["auto"] = Field("auto", union_mode="left_to_right")
    step_n: int | Literal["double"] = Field(2, union_mode="left_to_right")
    stop: StopConfig

    @model_validator(mode="after")
    def _positive(self) -> SequentialConfig:
        for key, value in (("first_n", self.first_n), ("step_n", self.step_n)):
            if isinstance(value, int) and value < 1:
                raise ValueError(f"{key} must be ≥ 1")
        return self


@dataclass(frozen=True, slots=True)
class SequentialPlan:
    """One request's rounds: the first round, the step, the cap and the stop rule."""

    first_n: int
    step_n: int | Literal["double"]
    cap: int
    n_max: int
    stop: StopRule


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
    sequential: SequentialConfig | None = None

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
        seq = self.sequential
        if seq is not None and seq.stop.kind == "verifier" and self.reranker.type != "reward":
            raise ValueError(
                "sequential stop kind 'verifier' scores samples with the reward reranker: "
                "set reranker: {type: reward, url: ...}"
            )
        if seq is not None and self.budget is not None and seq.first_n != "auto":
            raise ValueError("a budget steers the first round: use sequential.first_n: auto")
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

    def rerankers(self) -> list[RerankerConfig]:
        """The one reranker of the samples."""
        return [self.reranker]

    async def decide(
        self,
        ctx: PolicyContext,
        name: str,
        version: str,
        predictions: Mapping[str, float],
        messages: list[dict[str, Any]],
    ) -> Decision:
        """The n in [n_min, n_max] maximising E[R(n)] − λ · cost(n)."""
        prompt_tokens = await count_message_tokens_async(messages)
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
            # Also the first round of sequential sampling (``first_n: auto``).
            n = first_round_n(p, price or 0.0, self.n_min, self.n_max, efficiency)
        else:
            n = self.default_n or self.n_min
        if self.sequential is not None and isinstance(self.sequential.first_n, int):
            n = min(max(self.sequential.first_n, self.n_min), self.n_max)
        return Decision(
            policy=name,
            policy_version=version,
            arm=self.arm_name(n),
            upstream=self.upstream,
            n=n,
            predictions=dict(predictions),
            gain=self._gain(p, n),
            threshold=self.threshold,
            lambda_=lam if lam is not None else self.lambda_,
            expected_cost_usd=n * cost_usd,
            reranker=self.reranker.type,
            problem=problem,
            arm_index=None if problem is None else n - self.n_min,
        )

    def _gain(self, p: float, n: int) -> float:
        """The predicted reward gain of n samples over one."""
        efficiency = self.reranker.efficiency
        return expected_reward_best_of_n(p, n, efficiency) - expected_reward_best_of_n(
            p, 1, efficiency
        )

    def max_choices(self) -> int:
        """``n_max``: every choice is a distinct sample, and the policy draws at most n_max."""
        return self.n_max

    def fit_choices(self, decision: Decision, n_choices: int) -> Decision:
        """At least ``n_choices`` samples (sequential: in round one), so the client gets its
        ``n`` reranked choices; the arm, gain, cost and budget arm follow the samples drawn."""
        if n_choices <= decision.n:
            return decision
        n = min(n_choices, self.n_max)  # the handler refuses n above n_max before deciding
        p = decision.predictions.get(self.predictor_output)
        cost = decision.expected_cost_usd
        return replace(
            decision,
            n=n,
            arm=self.arm_name(n),
            gain=decision.gain if p is None else self._gain(min(max(float(p), 0.0), 1.0), n),
            expected_cost_usd=None if cost is None else cost * n / decision.n,
            arm_index=None if decision.problem is None else n - self.n_min,
        )

    def default_decision(self, name: str, version: str, reason: str) -> Decision:
        """``default_n`` (else ``n_min``) samples."""
        n = self.default_n or self.n_min
        return Decision(
            policy=name,
            policy_version=version,
            arm=self.arm_name(n),
            upstream=self.upstream,
            n=n,
            reranker=self.reranker.type,
            fallback_reason=reason,
        )

    def arm_name(self, n: int) -> str:
        """``best_of_<n>``, or ``sequential`` with a ``sequential:`` section.

        A sequential request's sample count is only known once its stop rule fires, so its arm
        names the method, not round one's size: one label per policy in headers, the access log
        and ``adaptive_requests_total{arm}``, while ``x-adaptive-n`` and
        ``adaptive.samples_drawn`` carry the count.
        """
        return "sequential" if self.sequential is not None else f"best_of_{n}"

    def sampling_plan(self, decision: Decision) -> SamplingPlan:
        """The policy's reranker, sampling parameters and ``use_upstream_n``."""
        return SamplingPlan(
            reranker=self.reranker, sampling=self.sampling, use_upstream_n=self.use_upstream_n
        )

    def samples_in_one_draw(self, decision: Decision) -> bool:
        """Not with a ``sequential:`` section (it draws in rounds), else as any decision."""
        return self.sequential is None and is_multi_sample(decision)

    def decision_details(self, decision: Decision) -> dict[str, Any] | None:
        """The sequential plan: round one, the step, the cap and the stop rule."""
        if self.sequential is None:
            return None
        plan = self.sequential_plan(decision)
        return {
            "sequential": {
                "first_n": plan.first_n,
                "step_n": plan.step_n,
                "cap": plan.cap,
                "stop": self.sequential.stop.model_dump(exclude_none=True),
                "samples": "depends on the stop rule: decided round by round",
            }
        }

    def sequential_plan(self, decision: Decision) -> SequentialPlan:
        """Round one is the decided n; the cap is ``n_max``, or round one for a prompt whose
        next sample cannot pay its price.

        With a price λ (fixed, or the budget's λ per USD times the cost of a sample), a further
        sample is worth drawing iff ``p · efficiency > λ · cost``: after failures the expected
        gain of the next sample is ``p · efficiency`` whatever was drawn before (an ideal stop
        rule keeps the first success), while its price is constant.
        """
        assert self.sequential is not None
        first = max(1, min(decision.n, self.n_max))
        cap = self.n_max
        price = self._price_per_sample(decision)
        p = decision.predictions.get(self.predictor_output)
        if price is not None and p is not None:
            if min(max(float(p), 0.0), 1.0) * self.reranker.efficiency <= price:
                cap = first
        return SequentialPlan(
            first, self.sequential.step_n, cap, self.n_max, self.sequential.stop.rule()
        )

    def _price_per_sample(self, decision: Decision) -> float | None:
        if decision.problem is not None and decision.lambda_ is not None:
            return float(decision.lambda_) * float(decision.problem.costs[0]) / max(self.n_min, 1)
        if self.lambda_ is not None:
            return self.lambda_
        return self.threshold

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
