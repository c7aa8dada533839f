"""Two-arm routing: send a request to the expensive upstream iff its predicted gain pays.

The rule is the paper's threshold on predicted marginal reward: ``gain ≥ threshold``, where the
threshold is fixed, or derived from a price of compute λ as ``λ · (cost_expensive − cost_cheap)``
(λ in reward units per USD), or λ is steered online by a budget controller.
"""

from __future__ import annotations

from collections.abc import Mapping

from proxy.config import PassthroughPolicy, RoutePolicy
from proxy.policies.base import Decision


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
    expensive = gain >= threshold
    return Decision(
        policy=name,
        policy_version=version,
        arm="expensive" if expensive else "cheap",
        upstream=policy.expensive if expensive else policy.cheap,
        predictions=dict(predictions),
        gain=gain,
        threshold=threshold,
        lambda_=lambda_ if lambda_ is not None else policy.lambda_,
        expected_cost_usd=cost_expensive_usd if expensive else cost_cheap_usd,
    )


def default_route(name: str, version: str, policy: RoutePolicy, reason: str) -> Decision:
    """The policy's default arm, used when prediction or the cache fails."""
    upstream = policy.expensive if policy.default_arm == "expensive" else policy.cheap
    return Decision(
        policy=name,
        policy_version=version,
        arm=policy.default_arm,
        upstream=upstream,
        fallback_reason=reason,
    )


def decide_passthrough(name: str, version: str, policy: PassthroughPolicy) -> Decision:
    """A passthrough policy always sends to its upstream."""
    return Decision(
        policy=name, policy_version=version, arm="passthrough", upstream=policy.upstream
    )
