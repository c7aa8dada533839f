"""``type: passthrough``: every request goes to one upstream; no prediction, no cache."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from proxy.policies.base import BasePolicy, PolicyContext
from proxy.policies.decision import Decision


class PassthroughPolicy(BasePolicy):
    """Forward every request to one upstream, no prediction."""

    type: Literal["passthrough"]
    upstream: str

    needs_prediction = False

    def upstream_refs(self) -> list[tuple[str, str]]:
        """The one upstream."""
        return [("upstream", self.upstream)]

    async def decide(
        self,
        ctx: PolicyContext,
        name: str,
        version: str,
        predictions: Mapping[str, float],
        messages: list[dict[str, Any]],
    ) -> Decision:
        """Always the upstream."""
        return self.default_decision(name, version, "")

    def default_decision(self, name: str, version: str, reason: str) -> Decision:
        """Always the upstream (a passthrough has nothing to fall back from)."""
        return Decision(
            policy=name, policy_version=version, arm="passthrough", upstream=self.upstream
        )
