"""Text handling for the rerankers: answer extraction, the judge prompt, judge reply parsing.

Final answers (``vote``): GSM8K (``#### 18``, ``A: 18``, "The answer is 18", ``$1,000``),
``\\boxed{}`` and multiple-choice letters ("(B)", "Answer: B"); a custom regex replaces the
default rules. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

Messages = Sequence[Mapping[str, Any]]

_NUM = r"-?\$?-?\d[\d,]*(?:\.\d+)?|-?\$?-?\.\d+"
_DEFAULT_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(rf"####\s*({_NUM})"),
    re.compile(r"\\boxed\{([^{}]*)\}"),
    re.compile(rf"answer\s*(?:is|:)\s*(?:\*\*)?\s*(\(?(?-i:[A-J])\)?(?![A-Za-z0-9])|{_NUM})", re.I),
    re.compile(rf"^\s*A:\s*({_NUM})", re.M),
    re.compile(r"\(([A-J])\)"),
    re.compile(rf"({_NUM})"),
)


def normalise_answer(raw: str) -> str:
    """Canonical form of an extracted answer: ``$1,000.00`` → ``1000``, ``(b)`` → ``B``."""
    text = raw.strip().strip("().*").strip()
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "")
    try:
        value = float(cleaned)
    except ValueError:
        return text.upper() if len(text) == 1 else text
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return repr(value)


def extract_answer(text: str, pattern: str | re.Pattern[str] | None = None) -> str | None:
    """The final answer of a completion, normalised, or ``None`` when none is found.

    Default rules, first that matches wins, last occurrence in the text: GSM8K ``#### 18``;
    ``\\boxed{18}``; ``The answer is 18`` / ``Answer: (B)``; a line ``A: 18`` (GSM8K solution
    format); a letter in parentheses ``(B)``; else the last number. Numbers lose ``$``, commas
    and a zero fraction. A custom ``pattern`` replaces all rules: its first group (or the whole
    match) of its last match is the answer.
    """
    if pattern is not None:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        matches = list(regex.finditer(text))
        if not matches:
            return None
        last = matches[-1]
        found = last.group(1) if regex.groups else last.group(0)
        return normalise_answer(found) if found else None
    for default in _DEFAULT_PATTERNS:
        found_all: list[str] = default.findall(text)
        if found_all:
            return normalise_answer(found_all[-1])
    return None


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
