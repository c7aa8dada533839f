"""Request overrides of an arm: how hard one upstream thinks (reasoning effort, budgets).

An arm of a ``route``, ``ladder`` or ``cascade`` policy may set ``overrides``: request
parameters the proxy writes into the body it sends that arm's upstream, so one model at two
reasoning efforts is two arms. A client's own value of the same parameter wins unless the
policy says ``override_client: true``.

``thinking_budget_tokens`` is the portable spelling of a provider thinking budget (Anthropic
``thinking.budget_tokens``, Gemini ``thinking_budget``): the litellm adapter turns it into the
provider's parameter (:func:`proxy.upstream.litellm_adapter.thinking_param`); an
OpenAI-compatible upstream takes ``reasoning_effort`` instead (``adaptive-proxy check`` says so).
A Responses API body takes the same overrides in its own spelling
(:func:`apply_responses_overrides`: ``reasoning.effort``, ``max_output_tokens``,
``text.verbosity``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from proxy.policies.spec import StrictModel

#: What each override key displaces in a client's request: the client's own spelling of it.
CLIENT_EQUIVALENTS: dict[str, tuple[str, ...]] = {
    "reasoning_effort": ("reasoning_effort",),
    "verbosity": ("verbosity",),
    # OpenAI refuses a request with both; the client's older ``max_tokens`` counts as its own.
    "max_completion_tokens": ("max_completion_tokens", "max_tokens"),
    "thinking_budget_tokens": ("thinking_budget_tokens", "thinking"),
}


class RequestOverrides(StrictModel):
    """The request parameters an arm sets (``None``: leave the client's request alone)."""

    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    max_completion_tokens: int | None = Field(None, gt=0)
    verbosity: Literal["low", "medium", "high"] | None = None
    thinking_budget_tokens: int | None = Field(None, ge=0)

    def as_body(self) -> dict[str, Any]:
        """The parameters set, as request-body keys."""
        return self.model_dump(exclude_none=True)


#: The keys ``overrides`` accepts, in the order the docs list them.
OVERRIDE_KEYS = tuple(RequestOverrides.model_fields)


class ArmTarget(StrictModel):
    """``{upstream: NAME, overrides: {...}}``: an upstream called with request overrides."""

    upstream: str
    overrides: RequestOverrides = Field(default_factory=RequestOverrides)


#: Tags of :data:`ArmRef`'s two spellings; not YAML keys, so error paths leave them out.
ARM_REF_TAGS = frozenset({"upstream_name", "upstream_with_overrides"})

#: An arm as written: a bare upstream name, or ``{upstream: NAME, overrides: {...}}``.
ArmRef = Annotated[
    Annotated[str, Tag("upstream_name")] | Annotated[ArmTarget, Tag("upstream_with_overrides")],
    Discriminator(
        lambda value: "upstream_name" if isinstance(value, str) else "upstream_with_overrides"
    ),
]


def target_of(arm: str | ArmTarget) -> ArmTarget:
    """An arm written as a bare upstream name or as ``{upstream, overrides}``."""
    return ArmTarget(upstream=arm) if isinstance(arm, str) else arm


def body_overrides(overrides: RequestOverrides | None) -> dict[str, Any]:
    """The overrides as request-body keys (``{}`` for none)."""
    return overrides.as_body() if overrides is not None else {}


def arm_key(upstream: str, overrides: Mapping[str, Any] | None) -> str:
    """The key an arm's realised cost is learned under: the upstream, plus its overrides.

    Two arms on one upstream at different efforts cost differently, so each has its own mean;
    an arm without overrides shares its upstream's.
    """
    if not overrides:
        return upstream
    settings = ",".join(f"{key}={overrides[key]}" for key in sorted(overrides))
    return f"{upstream}[{settings}]"


def apply_overrides(
    body: dict[str, Any], overrides: Mapping[str, Any], *, override_client: bool
) -> dict[str, Any]:
    """``body`` with the arm's ``overrides`` written in (a new dict; ``body`` is unchanged).

    A parameter the client set itself (or its equivalent, e.g. ``max_tokens`` for
    ``max_completion_tokens``) is kept unless ``override_client``, which removes the client's
    spelling and writes the arm's.
    """
    if not overrides:
        return body
    out = dict(body)
    for key, value in overrides.items():
        equivalents = CLIENT_EQUIVALENTS.get(key, (key,))
        client_set = any(out.get(name) is not None for name in equivalents)
        if client_set and not override_client:
            continue
        for name in equivalents:
            out.pop(name, None)
        out[key] = value
    return out


#: Where the Responses API (``POST /v1/responses``) spells each override: a path in its body.
RESPONSES_PATHS: dict[str, tuple[str, ...]] = {
    "reasoning_effort": ("reasoning", "effort"),
    "max_completion_tokens": ("max_output_tokens",),
    "verbosity": ("text", "verbosity"),
    "thinking_budget_tokens": ("thinking_budget_tokens",),
}


def apply_responses_overrides(
    body: dict[str, Any], overrides: Mapping[str, Any], *, override_client: bool
) -> dict[str, Any]:
    """:func:`apply_overrides` for a Responses API body (``reasoning.effort``,
    ``max_output_tokens``, ``text.verbosity``); nested objects are copied, never edited."""
    if not overrides:
        return body
    out = dict(body)
    for key, value in overrides.items():
        *parents, leaf = RESPONSES_PATHS.get(key, (key,))
        node = out
        for parent in parents:
            child = node.get(parent)
            node[parent] = dict(child) if isinstance(child, Mapping) else {}
            node = node[parent]
        if node.get(leaf) is not None and not override_client:
            continue
        node[leaf] = value
    return out
