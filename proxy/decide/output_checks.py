"""Policies and the predictor agree at load time.

Every ``predictor_output`` a policy reads (``policies.P.predictor_output``, and each ladder arm's
``policies.P.arms.N.predictor_output``) must be an output the loaded predictor produces;
otherwise every request of that policy would silently fall back to its default arm. ``check``
and ``serve`` refuse such a policy file, and the hot reload rejects such an edit (the previous
config keeps serving). The policy models are read by attribute, so this seam does not depend on
where each policy type's model is defined.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from proxy.config.schema import Config, Problem


def output_refs(policies: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(yaml path, policy name, output name)`` of every predictor output a policy reads."""
    refs: list[tuple[str, str, str]] = []
    for name, policy in policies.items():
        base = f"policies.{name}"
        output = getattr(policy, "predictor_output", None)
        if isinstance(output, str):
            refs.append((f"{base}.predictor_output", name, output))
        arms = getattr(policy, "arms", None)
        # A policy built without validation (``check`` on an invalid file) may hold anything.
        for index, arm in enumerate(arms if isinstance(arms, (list, tuple)) else ()):
            output = getattr(arm, "predictor_output", None)
            if isinstance(output, str):
                refs.append((f"{base}.arms.{index}.predictor_output", name, output))
    return refs


def output_problems(config: Config, available: Collection[str]) -> list[Problem]:
    """One problem per policy output the predictor does not produce, naming what it does."""
    return policy_output_problems(config.policies, available)


def policy_output_problems(
    policies: Mapping[str, Any], available: Collection[str]
) -> list[Problem]:
    """:func:`output_problems` for policies read by attribute (also unvalidated ones)."""
    known = ", ".join(sorted(available)) or "none"
    return [
        (
            path,
            f"policy {policy!r} reads predictor output {output!r}, which the loaded predictor "
            f"does not produce (available: {known})",
        )
        for path, policy, output in output_refs(policies)
        if output not in available
    ]
