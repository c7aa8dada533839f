"""The policy registry: YAML ``type`` → policy class, and the pydantic union built from it.

Adding a policy type is one module under ``proxy/policies/`` (a :class:`BasePolicy` subclass
with ``type: Literal["name"]``, its YAML fields and validators, ``upstream_refs``, ``decide``,
``default_decision``; optionally ``fallback_upstream``, ``budget_config``, ``sampling_plan``,
``allocate``/``plans_allocation``, ``needs_prediction``) and one line in :data:`POLICY_TYPES`.
Its class also gets one line in :data:`proxy.execute.registry.EXECUTOR_TYPES`, which picks the
:class:`~proxy.execute.seam.Executor` that runs its decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

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

if TYPE_CHECKING:
    AnyPolicy = BasePolicy
else:
    # pydantic picks the class by the ``type`` key (a discriminated union).
    AnyPolicy = Annotated[Union[tuple(POLICY_TYPES.values())], Field(discriminator="type")]  # noqa: UP007
