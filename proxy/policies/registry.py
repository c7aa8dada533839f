"""The policy registry: YAML ``type`` → policy class, and the pydantic union built from it.

Adding a policy type is one module under ``proxy/policies/`` (a :class:`BasePolicy` subclass
with ``type: Literal["name"]``, its YAML fields and validators, ``upstream_refs``, ``decide``,
``default_decision``; optionally ``fallback_upstream``, ``budget_config``, ``sampling_plan``,
``allocate``/``plans_allocation``, ``needs_prediction``) and one line in :data:`POLICY_TYPES`.
Its class also gets one line in :data:`proxy.execute.registry.EXECUTOR_TYPES`, which picks the
:class:`~proxy.execute.seam.Executor` that runs its decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, TypeVar, Union

from pydantic import Field

from proxy.policies.base import BasePolicy
from proxy.policies.best_of_k import BestOfKPolicy
from proxy.policies.cascade import CascadePolicy
from proxy.policies.ladder import LadderPolicy
from proxy.policies.passthrough import PassthroughPolicy
from proxy.policies.route import RoutePolicy

POLICY_TYPES: dict[str, type[BasePolicy]] = {
    "route": RoutePolicy,
    "passthrough": PassthroughPolicy,
    "best_of_k": BestOfKPolicy,
    "ladder": LadderPolicy,
    "cascade": CascadePolicy,
}

P = TypeVar("P", bound=BasePolicy)


def policy_as(policy: BasePolicy | None, kind: type[P]) -> P:
    """``policy`` as the policy class an executor runs, or ``TypeError`` (a wiring mistake:
    :mod:`proxy.execute.registry` picks an executor by the policy's class, so the two agree)."""
    if not isinstance(policy, kind):
        raise TypeError(f"this executor runs {kind.__name__} policies, not {type(policy).__name__}")
    return policy


if TYPE_CHECKING:
    AnyPolicy = BasePolicy
else:
    # pydantic picks the class by the ``type`` key (a discriminated union).
    AnyPolicy = Annotated[Union[tuple(POLICY_TYPES.values())], Field(discriminator="type")]  # noqa: UP007
