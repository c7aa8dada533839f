"""``type: cascade``: run the cheap stages, read their answers, escalate only when it pays.

The stages before the last run first, concurrently; the proxy extracts their final answers and
turns the evidence (agreement, distinct answers, missing answers, answer length, logprobs when
asked for, the prompt predictor's outputs) into the predicted gain of escalating, with the
agreement rule (no model) or a trained escalation model (:mod:`proxy.policies.escalation`).
Escalate iff ``gain ≥ threshold``, or ``gain ≥ λ · Δcost_usd`` (λ fixed by ``lambda`` or steered
by a ``budget`` on the escalation rate).

The decision taken before any call (cached, and what ``POST /v1/adaptive/decide`` shows) is
which stages run first; whether the last stage runs depends on their answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, model_validator

from proxy.policies.base import BasePolicy, PolicyContext
from proxy.policies.decision import Decision
from proxy.policies.escalation import AgreementRule, EscalationModel, Escalator, resolve_model_path
from proxy.policies.overrides import RequestOverrides, body_overrides
from proxy.policies.spec import BudgetConfig, StrictModel, check_one_price
from proxy.wire.tokens import count_message_tokens_async


class CascadeStage(StrictModel):
    """One stage: an upstream, how many samples it draws, whether to ask for logprobs."""

    upstream: str
    n: int = Field(1, ge=1, le=16)
    name: str | None = None
    logprobs: bool = False
    # Request parameters of this stage (reasoning effort, thinking budget, ...).
    overrides: RequestOverrides | None = None

    def body_overrides(self) -> dict[str, Any]:
        """The stage's overrides as request-body keys."""
        return body_overrides(self.overrides)

    @property
    def label(self) -> str:
        """How the stage is named in ``adaptive.stages`` and ``x-adaptive-arm``."""
        return self.name or self.upstream


class EscalateConfig(StrictModel):
    """When to run the last stage: a gain rule (agreement or a model) against a price."""

    model: str | None = None  # a shipped model name or a path to a model JSON; None: agreement
    threshold: float | None = None
    lambda_: float | None = Field(None, alias="lambda", ge=0)
    budget: BudgetConfig | None = None

    @model_validator(mode="after")
    def _one_price(self) -> EscalateConfig:
        check_one_price(self.threshold, self.lambda_, self.budget)
        if self.budget is not None and self.budget.kind == "mean_samples":
            raise ValueError("a cascade's budget is fraction_expensive or usd_per_hour")
        if self.model is not None:
            EscalationModel.load(resolve_model_path(self.model))  # refuse a bad file at load
        return self

    def effective_threshold(self) -> float | None:
        """The threshold in force (0.5 by default when no price is given)."""
        if self.threshold is None and self.lambda_ is None and self.budget is None:
            return 0.5
        return self.threshold


class CascadePolicy(BasePolicy):
    """Cheap stages first; the last stage only when the cheap answers say it pays."""

    type: Literal["cascade"]
    stages: list[CascadeStage] = Field(min_length=2)
    escalate: EscalateConfig = Field(default_factory=EscalateConfig)
    answer_pattern: str | None = None
    #: The stages' overrides replace a client's own values of the same parameters.
    override_client: bool = False

    @model_validator(mode="after")
    def _last_stage(self) -> CascadePolicy:
        if self.stages[-1].n != 1:
            raise ValueError("the last stage (the escalation) answers once: leave its n at 1")
        if self.fallback is not None:
            raise ValueError(
                "a cascade falls back on its own (a failing last stage: the cheap answer); "
                "remove 'fallback'"
            )
        labels = [s.label for s in self.stages]
        if any(s.overrides for s in self.stages) and len(set(labels)) != len(labels):
            raise ValueError(
                "stages on one upstream with different overrides need distinct names "
                f"(x-adaptive-arm names the answering stage; got {labels})"
            )
        return self

    def samples_in_one_draw(self, decision: Decision) -> bool:
        """Never: a cascade runs its stages (:mod:`proxy.execute.cascade`)."""
        return False

    def override_refs(self) -> list[tuple[str, str, RequestOverrides]]:
        """Every stage that sets overrides."""
        return [
            (f"stages.{i}.overrides", s.upstream, s.overrides)
            for i, s in enumerate(self.stages)
            if s.overrides is not None
        ]

    def fallback_upstream(self) -> str | None:
        """None: a failing stage falls back within the cascade (see
        :mod:`proxy.execute.cascade`)."""
        return None

    def budget_config(self) -> BudgetConfig | None:
        """The escalation budget, whose controller steers λ."""
        return self.escalate.budget

    @cached_property
    def escalator(self) -> Escalator:
        """The agreement rule, or the escalation model named in the YAML (loaded once)."""
        if self.escalate.model is None:
            return AgreementRule()
        return EscalationModel.load(resolve_model_path(self.escalate.model))

    @property
    def cheap_stages(self) -> list[CascadeStage]:
        """Every stage but the last."""
        return self.stages[:-1]

    def upstream_refs(self) -> list[tuple[str, str]]:
        """Every stage's upstream."""
        return [(f"stages[{i}].upstream", s.upstream) for i, s in enumerate(self.stages)]

    async def decide(
        self,
        ctx: PolicyContext,
        name: str,
        version: str,
        predictions: Mapping[str, float],
        messages: list[dict[str, Any]],
    ) -> Decision:
        """Run the cheap stages first (escalation is decided on their answers)."""
        tokens = await count_message_tokens_async(messages)
        cheap_cost = sum(
            ctx.costs.expected_cost_usd(s.upstream, tokens, s.n, overrides=s.body_overrides())
            for s in self.cheap_stages
        )
        decision = self._decision(name, version, dict(predictions), cheap_cost, None)
        if self.escalate.budget is not None:
            lam = await ctx.budgets.current_lambda(name, version, self)
            decision = replace(decision, lambda_=lam)
        return decision

    def default_decision(self, name: str, version: str, reason: str) -> Decision:
        """The same plan: the cheap stages first (the prior is missing, the evidence is not)."""
        return self._decision(name, version, {}, None, reason)

    def _decision(
        self,
        name: str,
        version: str,
        predictions: dict[str, float],
        cheap_cost_usd: float | None,
        reason: str | None,
    ) -> Decision:
        first = self.stages[0]
        return Decision(
            policy=name,
            policy_version=version,
            arm="cascade",
            upstream=first.upstream,
            n=sum(s.n for s in self.cheap_stages),
            predictions=predictions,
            threshold=self.escalate.effective_threshold(),
            lambda_=self.escalate.lambda_,
            expected_cost_usd=cheap_cost_usd,
            fallback_reason=reason,
        )

    def decision_details(self, decision: Decision) -> dict[str, Any] | None:
        """The pre-call plan: which stages run first; escalation depends on their answers."""
        return {
            "stages": [
                {
                    "stage": s.label,
                    "upstream": s.upstream,
                    "n": s.n,
                    "runs": "always",
                    **({"overrides": s.body_overrides()} if s.overrides else {}),
                }
                for s in self.cheap_stages
            ]
            + [
                {
                    "stage": self.stages[-1].label,
                    "upstream": self.stages[-1].upstream,
                    "n": 1,
                    "runs": "if the cheap answers call for it",
                    **(
                        {"overrides": self.stages[-1].body_overrides()}
                        if self.stages[-1].overrides
                        else {}
                    ),
                }
            ],
            "escalation": "depends on the cheap stages' answers: decided after they return",
            "escalator": "agreement" if self.escalate.model is None else self.escalate.model,
        }
