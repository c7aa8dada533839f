"""The :class:`Decision` a policy takes for one request, and how it travels.

A decision goes into the decision cache, the ``x-adaptive-*`` headers and the ``adaptive`` body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import Any


@dataclass(frozen=True, slots=True)
class Decision:
    """What the proxy will do with a request: which arm, which upstream, how many samples, why."""

    policy: str
    policy_version: str
    arm: str
    upstream: str
    n: int = 1
    predictions: Mapping[str, float] = field(default_factory=dict)
    gain: float | None = None
    threshold: float | None = None
    lambda_: float | None = None
    expected_cost_usd: float | None = None
    reranker: str | None = None
    fallback_reason: str | None = None
    budget: Mapping[str, Any] | None = None
    cache_hit: bool = False
    decision_ms: float = 0.0
    # The choice the policy solved (budgeted policies only): what the budget controller replays.
    problem: Any = field(default=None, compare=False, repr=False)
    arm_index: int | None = None
    # Request parameters the arm sets (reasoning effort, budgets: :mod:`proxy.policies.overrides`)
    # and whether they displace the client's own values.
    overrides: Mapping[str, Any] = field(default_factory=dict)
    override_client: bool = False
    # ``learn: true`` policies only (the outcome log's inputs, cached with the decision): the
    # predictor's own outputs before a learned head corrected ``predictions``, the prompt's
    # embedding as the predictor computed it (float16, base64) and the head's version.
    prior_predictions: Mapping[str, float] | None = field(default=None, repr=False)
    embedding_f16: str | None = field(default=None, repr=False)
    model_version: str | None = None

    def to_cache(self) -> dict[str, Any]:
        """JSON-able form stored in the decision cache (without per-request facts)."""
        data = asdict(self)
        data.pop("problem")
        for transient in ("cache_hit", "decision_ms", "budget", "arm_index"):
            data.pop(transient)
        return data

    @classmethod
    def from_cache(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a cached decision; raises ``TypeError``/``KeyError`` on a foreign entry."""
        if data.keys() <= _FIELDS:  # the usual case: skip the filtering copy (hot path)
            return cls(**data)
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})

    def with_timing(self, *, cache_hit: bool, decision_ms: float) -> Decision:
        """The same decision, stamped with how it was reached for this request."""
        # Per request on the cache-hit path: ``dataclasses.replace`` costs twice this.
        values = list(_ALL_FIELDS(self))
        values[_CACHE_HIT_AT] = cache_hit
        values[_DECISION_MS_AT] = decision_ms
        return type(self)(*values)

    def adaptive(self) -> dict[str, Any]:
        """The ``adaptive`` object of responses and of ``POST /v1/adaptive/decide``."""
        out: dict[str, Any] = {
            "policy": self.policy,
            "policy_version": self.policy_version,
            "arm": self.arm,
            "upstream": self.upstream,
            "n": self.n,
            "gain": self.gain,
            "predictions": dict(self.predictions),
            "threshold": self.threshold,
            "lambda": self.lambda_,
            "expected_cost_usd": self.expected_cost_usd,
            "cache": "hit" if self.cache_hit else "miss",
            "decision_ms": round(self.decision_ms, 3),
        }
        if self.overrides:
            out["overrides"] = dict(self.overrides)
        if self.reranker is not None:
            out["reranker"] = self.reranker
        if self.fallback_reason is not None:
            out["fallback_reason"] = self.fallback_reason
        if self.budget is not None:
            out["budget"] = dict(self.budget)
        return out

    def headers(self) -> dict[str, str]:
        """The ``x-adaptive-*`` response headers."""
        return {
            "x-adaptive-policy": self.policy,
            "x-adaptive-arm": self.arm,
            "x-adaptive-n": str(self.n),
            "x-adaptive-cache": "hit" if self.cache_hit else "miss",
            "x-adaptive-decision-ms": f"{self.decision_ms:.3f}",
            **({"x-adaptive-gain": f"{self.gain:.4f}"} if self.gain is not None else {}),
            # The policy's own fallback to its default arm (predictor down, timeout, ...).
            **(
                {"x-adaptive-fallback-reason": self.fallback_reason}
                if self.fallback_reason is not None
                else {}
            ),
        }


_FIELD_ORDER = tuple(Decision.__dataclass_fields__)
_FIELDS = frozenset(_FIELD_ORDER)
_ALL_FIELDS = attrgetter(*_FIELD_ORDER)
_CACHE_HIT_AT = _FIELD_ORDER.index("cache_hit")
_DECISION_MS_AT = _FIELD_ORDER.index("decision_ms")
