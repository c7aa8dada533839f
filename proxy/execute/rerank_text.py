"""Text handling for the rerankers: answer extraction, the judge prompt, judge reply parsing.

Final answers (``vote``) are extracted by :mod:`predictor_onnx.answers` (re-exported here), the
one definition the escalation model's training shares. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from predictor_onnx.answers import extract_answer, normalise_answer

__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "JUDGE_RESPONSE_FORMAT",
    "extract_answer",
    "normalise_answer",
    "parse_judge_answer",
    "render_conversation",
    "truncate_middle",
]

Messages = Sequence[Mapping[str, Any]]


def render_conversation(messages: Messages) -> str:
    """The full conversation as text, one ``role: content`` block per message."""
    blocks = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(
                str(part.get("text", "")) for part in content if isinstance(part, Mapping)
            )
        blocks.append(f"{message.get('role', 'user')}: {content or ''}")
    return "\n\n".join(blocks)


DEFAULT_JUDGE_TEMPLATE = """\
You are an expert judge. Below is a conversation and several candidate replies to its last \
message. Pick the single best candidate: the one most likely to be correct and complete.

# Conversation
{question}

# Candidates
{candidates}

Answer with JSON only, in the form {"best_index": N}, where N is the number of the best \
candidate (candidates are numbered from 1)."""

JUDGE_RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "judge_choice",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"best_index": {"type": "integer"}},
            "required": ["best_index"],
            "additionalProperties": False,
        },
    },
}
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_CANDIDATE = re.compile(r"candidate\s*#?\s*(\d+)", re.I)
_BARE_NUMBER = re.compile(r"^\D{0,20}?(\d+)\D{0,20}$", re.S)


def truncate_middle(text: str, max_chars: int) -> str:
    """Keep the head and the tail (where final answers are) of an over-long candidate."""
    if len(text) <= max_chars:
        return text
    marker = "\n[… truncated …]\n"
    keep = max(max_chars - len(marker), 2)
    return text[: keep // 2] + marker + text[len(text) - (keep - keep // 2) :]


def parse_judge_answer(text: str) -> int | None:
    """The 1-based index a judge chose, from JSON, fenced JSON, ``Candidate N`` or a bare number.

    Returns ``None`` when nothing usable is found (range checks are the caller's).
    """
    stripped = text.strip()
    fenced = _FENCE.search(stripped)
    sources = [fenced.group(1).strip()] if fenced else []
    sources += [stripped, *(m.group(0) for m in _OBJECT.finditer(stripped))]
    saw_object = False
    for source in sources:
        try:
            data = json.loads(source)
        except ValueError:
            continue
        if isinstance(data, dict):
            value = data.get("best_index")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().isdigit():
                return int(value.strip())
            saw_object = True
        elif isinstance(data, int) and not isinstance(data, bool):
            return data
    if saw_object:
        return None  # JSON without best_index: the judge answered, uselessly
    named = _CANDIDATE.findall(stripped)
    if len(set(named)) == 1:
        return int(named[0])
    bare = _BARE_NUMBER.match(stripped)
    if bare:
        return int(bare.group(1))
    return None
