"""Tool calls and structured outputs as best-of-k candidates: canonical forms, parseability.

With ``tools`` (or ``functions``) in a request, a sample's answer is its tool calls: each call's
name and its arguments parsed as JSON, the calls sorted, serialised with sorted keys, so two
samples calling the same tool with the same arguments in another key order are one vote. With
``response_format`` (or the Responses API's ``text.format``) of type ``json_object`` or
``json_schema``, a sample's answer is its content parsed as JSON and serialised canonically.
``judge`` and ``reward`` see these canonical serialisations as the candidates.

A sample whose JSON (content, or a tool call's arguments) does not parse is never returned while
another sample parses: it is left out of the reranking and ranked last. A reranker configured to
read free-text answers (``vote`` with its own ``pattern``) cannot compare such candidates; the
policy then routes instead (one call, ``adaptive.fallback_reason: "unrankable_candidates"``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from proxy.execute.rerank import Messages, Reranker, RerankResult
from proxy.policies.spec import RerankerConfig

StructuredKind = Literal["tool_calls", "json"]

#: ``adaptive.fallback_reason`` when the configured reranker cannot compare the candidates.
UNRANKABLE = "unrankable_candidates"

_JSON_FORMATS = frozenset({"json_object", "json_schema"})


def structured_kind(body: Mapping[str, Any]) -> StructuredKind | None:
    """What a request's answers are: tool calls, JSON, or (``None``) free text."""
    if body.get("tools") or body.get("functions"):
        return "tool_calls"
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in _JSON_FORMATS:
        return "json"
    text = body.get("text")
    text_format = text.get("format") if isinstance(text, Mapping) else None
    if isinstance(text_format, Mapping) and text_format.get("type") in _JSON_FORMATS:
        return "json"
    return None


def can_rank(spec: RerankerConfig, kind: StructuredKind | None) -> bool:
    """Whether the reranker ``spec`` can compare candidates of ``kind``.

    A ``vote`` with its own ``pattern`` extracts final answers from prose with that regex; it has
    nothing to read in a tool call or a JSON object.
    """
    return kind is None or not (spec.type == "vote" and spec.pattern is not None)


def canonical_json(value: Any) -> str:
    """``value`` serialised with sorted keys and no insignificant whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _parsed_arguments(arguments: Any) -> tuple[bool, Any]:
    if isinstance(arguments, Mapping):
        return True, dict(arguments)
    if not isinstance(arguments, str):
        return False, None
    try:
        return True, json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return False, None


def _tool_calls(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        return [c.get("function") or {} for c in calls if isinstance(c, Mapping)]
    legacy = message.get("function_call")  # the deprecated single ``function_call``
    return [legacy] if isinstance(legacy, Mapping) else []


def canonical_answer(choice: Mapping[str, Any], kind: StructuredKind) -> str | None:
    """The canonical form of one sample's answer; ``None`` when its JSON does not parse.

    With tools, a sample that answers in text instead of calling a tool is that text (a valid
    answer, compared as text).
    """
    message = choice.get("message")
    message = message if isinstance(message, Mapping) else {}
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    if kind == "tool_calls":
        calls = _tool_calls(message)
        if not calls:
            return text.strip() or None
        canonical = []
        for call in calls:
            ok, arguments = _parsed_arguments(call.get("arguments"))
            if not ok:
                return None
            canonical.append(canonical_json({"name": call.get("name"), "arguments": arguments}))
        return "[" + ",".join(sorted(canonical)) + "]"
    try:
        return canonical_json(json.loads(text))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Candidates:
    """What the rerankers see of the samples: one text per sample, and which ones parse."""

    texts: list[str]
    parses: list[bool]

    @property
    def unparseable(self) -> int:
        """Samples whose JSON does not parse."""
        return self.parses.count(False)


def structured_candidates(choices: Sequence[Mapping[str, Any]], kind: StructuredKind) -> Candidates:
    """Canonical texts of the samples (an unparseable one keeps its raw content)."""
    texts: list[str] = []
    parses: list[bool] = []
    for choice in choices:
        canonical = canonical_answer(choice, kind)
        parses.append(canonical is not None)
        if canonical is None:
            message = choice.get("message")
            content = message.get("content") if isinstance(message, Mapping) else None
            canonical = content if isinstance(content, str) else ""
        texts.append(canonical)
    return Candidates(texts, parses)


def parseable_first(ranking: RerankResult, parses: Sequence[bool]) -> RerankResult:
    """``ranking`` with every sample that parses ahead of every one that does not (stable)."""
    if all(parses) or not any(parses):
        return ranking
    order = tuple(i for i in ranking.order if parses[i]) + tuple(
        i for i in ranking.order if not parses[i]
    )
    return replace(ranking, order=order)


async def rerank_structured(
    reranker: Reranker, messages: Messages, candidates: Candidates
) -> RerankResult:
    """Rank the samples that parse with ``reranker``; the others follow, unscored.

    When none parses, all are ranked (there is nothing better to return).
    """
    shown = [i for i, ok in enumerate(candidates.parses) if ok]
    if not shown or len(shown) == len(candidates.texts):
        ranking = await reranker.rerank(messages, candidates.texts)
        return parseable_first(ranking, candidates.parses)
    ranking = await reranker.rerank(messages, [candidates.texts[i] for i in shown])
    hidden = tuple(i for i, ok in enumerate(candidates.parses) if not ok)
    scores: list[float | None] = [None] * len(candidates.texts)
    for position, index in enumerate(shown):
        if position < len(ranking.scores):
            scores[index] = ranking.scores[position]
    return replace(
        ranking,
        order=tuple(shown[j] for j in ranking.order) + hidden,
        scores=tuple(scores),
    )
