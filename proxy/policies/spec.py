"""YAML building blocks shared by policy types: strict models, budgets, rerankers.

They live here, below both :mod:`proxy.config.schema` and the policy modules, so that a policy
module
owns its own YAML model without importing the whole config (which imports the policy registry).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """A YAML section: unknown keys are errors, values frozen, ``lambda`` read as ``lambda_``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BudgetConfig(StrictModel):
    """A target the proxy keeps by adjusting its price of compute λ online."""

    kind: Literal["fraction_expensive", "mean_samples", "usd_per_hour"]
    target: float = Field(gt=0)
    window: int = Field(1000, ge=10)


class RerankerConfig(StrictModel):
    """How best-of-k picks its winner: ``judge``, ``reward``, ``vote`` or ``first``."""

    type: Literal["judge", "reward", "vote", "first"] = "vote"
    upstream: str | None = None
    template: str | None = None
    pattern: str | None = None
    url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(30.0, gt=0)
    efficiency: float = Field(1.0, ge=0, le=1)
    request_format: Literal["simple", "vllm_score"] = "simple"
    scores_path: str | None = None
    model: str | None = None
    structured_output: bool = True

    @model_validator(mode="after")
    def _needs(self) -> RerankerConfig:
        if self.type == "judge" and not self.upstream:
            raise ValueError("reranker 'judge' needs 'upstream' (the judge model)")
        if self.type == "reward" and not self.url:
            raise ValueError("reranker 'reward' needs 'url' (the reward model endpoint)")
        return self


def check_one_price(
    threshold: float | None, lambda_: float | None, budget: BudgetConfig | None
) -> None:
    """A policy is priced by at most one of a fixed threshold, a fixed λ or a budget."""
    given = [
        key
        for key, value in (("threshold", threshold), ("lambda", lambda_), ("budget", budget))
        if value is not None
    ]
    if len(given) > 1:
        raise ValueError(f"give only one of threshold, lambda, budget (got {', '.join(given)})")
