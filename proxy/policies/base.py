"""The policy interface: one YAML model per policy type that also takes its decisions.

A policy type is a pydantic model (its YAML section) subclassing :class:`BasePolicy`. It knows
the upstreams it references, its fallback upstream, its default arm (used when prediction fails),
how to turn predictions into a :class:`~proxy.policies.decision.Decision`, and how a multi-sample
decision is executed (:class:`SamplingPlan`). The registry (:mod:`proxy.policies.registry`)
maps the YAML ``type`` to the class.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from pydantic import Field, model_validator

from proxy.policies.decision import Decision
from proxy.policies.overrides import RequestOverrides
from proxy.policies.spec import BudgetConfig, RerankerConfig, StrictModel, check_one_price


class PredictionMissingError(KeyError):
    """The predictor did not produce the output a policy reads."""


def read_output(predictions: Mapping[str, float], name: str) -> float:
    """One named prediction, or :class:`PredictionMissingError`."""
    try:
        return float(predictions[name])
    except KeyError:
        raise PredictionMissingError(
            f"predictor gave no {name!r} (it gives: {', '.join(sorted(predictions))})"
        ) from None


def is_multi_sample(decision: Decision) -> bool:
    """Whether ``decision`` draws several samples (or reranks one): best-of-k, not a route."""
    return decision.n > 1 or decision.reranker is not None


class CostEstimator(Protocol):
    """Expected USD of a call (implemented by :class:`proxy.upstream.pricing.CostModel`)."""

    def expected_cost_usd(
        self,
        upstream: str,
        prompt_tokens: int,
        n: int = 1,
        *,
        overrides: Mapping[str, Any] | None = None,
    ) -> float: ...


class LambdaSource(Protocol):
    """The price of compute λ a budget controller currently holds for a policy."""

    async def current_lambda(self, name: str, version: str, policy: BasePolicy) -> float | None: ...


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a policy may consult while deciding: cost estimates and budget controllers."""

    costs: CostEstimator
    budgets: LambdaSource


@dataclass(frozen=True, slots=True)
class SamplingPlan:
    """How a multi-sample decision is drawn and reranked."""

    reranker: RerankerConfig = field(default_factory=RerankerConfig)
    # Sampling parameters the client did not set itself.
    sampling: Mapping[str, Any] = field(default_factory=lambda: {"temperature": 0.7})
    # ``None``: use the upstream's ``supports_n``.
    use_upstream_n: bool | None = None


class BasePolicy(StrictModel):
    """A policy's YAML section and its decision rule."""

    type: str
    fallback: str | None = None
    #: Log this policy's requests to the outcome log and serve its learned head (``learning:``).
    learn: bool = False

    # Passthrough-like policies decide without predictions (no cache, no predictor).
    needs_prediction: ClassVar[bool] = True
    # Whether ``POST /v1/adaptive/allocate`` can plan a batch under this policy.
    plans_allocation: ClassVar[bool] = False

    @abstractmethod
    def upstream_refs(self) -> list[tuple[str, str]]:
        """``(YAML path below the policy, upstream name)`` of every upstream it uses."""

    def override_refs(self) -> list[tuple[str, str, RequestOverrides]]:
        """``(YAML path, upstream, overrides)`` of every arm that sets request overrides."""
        return []

    def references(self) -> list[tuple[str, str]]:
        """Every upstream reference, including the fallback."""
        refs = self.upstream_refs()
        if self.fallback:
            refs.append(("fallback", self.fallback))
        return refs

    def fallback_upstream(self) -> str | None:
        """The upstream tried when the decided one fails server-side."""
        return self.fallback

    def budget_config(self) -> BudgetConfig | None:
        """The budget whose controller steers λ (``None``: λ is fixed)."""
        return None

    def rerankers(self) -> list[RerankerConfig]:
        """Every reranker the policy may call (their credentials are secrets to redact)."""
        return []

    def is_budgeted(self) -> bool:
        """Whether λ moves, so a cached decision must be re-decided from its predictions."""
        return self.budget_config() is not None

    @abstractmethod
    async def decide(
        self,
        ctx: PolicyContext,
        name: str,
        version: str,
        predictions: Mapping[str, float],
        messages: list[dict[str, Any]],
    ) -> Decision:
        """The decision for one conversation from its predictions."""

    @abstractmethod
    def default_decision(self, name: str, version: str, reason: str) -> Decision:
        """The default arm, used when prediction fails."""

    def samples_in_one_draw(self, decision: Decision) -> bool:
        """Whether ``decision`` runs as one best-of-k draw, whose ``n`` grows to the client's
        (the executor of each policy class is chosen in :mod:`proxy.execute.registry`)."""
        return is_multi_sample(decision)

    def decision_details(self, decision: Decision) -> dict[str, Any] | None:
        """Facts ``POST /v1/adaptive/decide`` adds beyond the decision (``None``: none)."""
        return None

    def max_choices(self) -> int | None:
        """The most choices (a client's ``n``) one request may ask for (``None``: no limit of
        the policy's own; the protocol's 128 applies)."""
        return None

    def fit_choices(self, decision: Decision, n_choices: int) -> Decision:
        """``decision`` for a client asking for ``n_choices`` choices.

        A multi-sample decision returns the reranked best ``n_choices`` of its samples, so it
        draws at least that many; a routed one passes ``n`` on (the upstream draws n itself).
        """
        if n_choices <= decision.n or not self.samples_in_one_draw(decision):
            return decision
        cost = decision.expected_cost_usd
        return replace(
            decision,
            n=n_choices,
            expected_cost_usd=None if cost is None else cost * n_choices / decision.n,
        )

    def sampling_plan(self, decision: Decision) -> SamplingPlan:
        """How to draw and rerank the samples of ``decision`` (when ``decision.n > 1``)."""
        return SamplingPlan()

    def allocate(
        self,
        ctx: PolicyContext,
        predictions: Sequence[Mapping[str, float]],
        prompt_tokens: Sequence[int],
        budget: float,
        unit: str,
    ) -> list[dict[str, Any]]:
        """The paper's batch allocation of ``budget`` (samples or USD) over prompts."""
        raise ValueError(f"policy type {self.type!r} does not plan allocations")


class AdaptivePolicy(BasePolicy):
    """A policy priced by one rule: a fixed ``threshold``, a fixed ``lambda`` or a ``budget``."""

    threshold: float | None = None
    lambda_: float | None = Field(None, alias="lambda", ge=0)
    budget: BudgetConfig | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> AdaptivePolicy:
        check_one_price(self.threshold, self.lambda_, self.budget)
        return self

    def budget_config(self) -> BudgetConfig | None:
        """The budget whose controller steers λ (``None``: λ is fixed)."""
        return self.budget
