"""Upstream references of a policy file that does not validate, so ``check`` lists them too.

Validation stops at the first bad value of a section, and cross-references are checked only on
a valid file: a negative threshold would hide an unknown upstream until it was fixed. Here each
policy is built without validation (``model_construct``, nested sections included) from the
parsed YAML, and asks its own class for its references, so the rules stay with the policy types.
``check`` reads the predictor outputs those policies name the same way.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from proxy.policies.registry import POLICY_TYPES


def _bare(annotation: Any) -> Any:
    # ``Annotated[X, ...]`` (a tagged union, a constrained type) is read as ``X``.
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _loose_value(annotation: Any, value: Any) -> Any:
    annotation = _bare(annotation)
    candidates = (
        get_args(annotation)
        if get_origin(annotation) in (Union, types.UnionType)
        else (annotation,)
    )
    for candidate in map(_bare, candidates):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            if isinstance(value, dict):
                return loose(candidate, value)
        elif get_origin(candidate) in (list, tuple) and isinstance(value, list):
            item_type = (get_args(candidate) or (None,))[0]
            if isinstance(item_type, type) and issubclass(item_type, BaseModel):
                return [loose(item_type, v) if isinstance(v, dict) else v for v in value]
    return value


def loose(model: type[BaseModel], raw: dict[str, Any]) -> Any:
    """``model`` built from ``raw`` without validation (missing fields take their defaults)."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias if field.alias in raw else name
        if key in raw:
            values[name] = _loose_value(field.annotation, raw[key])
    return model.model_construct(**values)


def loose_policies(raw: dict[str, Any]) -> dict[str, Any]:
    """Each policy of an unvalidated file whose type is known, built without validation."""
    policies = raw.get("policies")
    if not isinstance(policies, dict):
        return {}
    built: dict[str, Any] = {}
    for name, section in policies.items():
        policy_type = section.get("type") if isinstance(section, dict) else None
        if policy_type in POLICY_TYPES:
            built[str(name)] = loose(POLICY_TYPES[policy_type], section)
    return built


def loose_reference_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Unknown upstreams named by the policies of an unvalidated file, with their YAML paths."""
    upstreams = raw.get("upstreams")
    if not isinstance(upstreams, dict):
        return []
    known = ", ".join(sorted(str(u) for u in upstreams)) or "none"
    problems: list[tuple[str, str]] = []
    for name, policy in loose_policies(raw).items():
        try:
            refs = policy.references()
        except (AttributeError, TypeError):
            continue  # too broken to name its references; validation reports why
        problems += [
            (f"policies.{name}.{path}", f"unknown upstream {ref!r} (known: {known})")
            for path, ref in refs
            if isinstance(ref, str) and ref not in upstreams
        ]
    return problems
