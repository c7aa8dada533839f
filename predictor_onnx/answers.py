"""Final answers of completions: extraction and normalisation (no I/O, no ``proxy`` import).

One definition shared by the proxy's ``vote`` reranker and cascades (``proxy.execute.rerank_text``
re-exports these) and by the training of the escalation model, which must featurise recorded
answers exactly as the proxy featurises live ones.

Default rules: GSM8K (``#### 18``, ``A: 18``, "The answer is 18", ``$1,000``), ``\\boxed{}`` and
multiple-choice letters ("(B)", "Answer: B"); a custom regex replaces the default rules.
"""

from __future__ import annotations

import math
import re

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
