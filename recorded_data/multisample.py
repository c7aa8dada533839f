"""The reader of the multi-sample suites: many recorded samples of one model per prompt.

``multisample/`` in the data folder holds, per prompt, the prompt exactly as the model saw it and
a list of independent samples with their recorded correctness (see the data README). Each file is
one suite: one model id of the replay upstream, and one training dataset of the predictor
(``predictor_onnx.multisample_alpaca_data``, label = the prompt's empirical success rate).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "MULTISAMPLE_SUITES",
    "MultiSamplePrompt",
    "MultiSampleSpec",
    "MultiSampleSuite",
    "load_multisample",
]


@dataclass(frozen=True)
class MultiSampleSpec:
    """One suite: its file, the verifier that scores its candidates, and how to describe it."""

    name: str
    file: str
    verifier: str  # "game24" (a real checker) or "recorded" (the benchmark's own tests: oracle)
    description: str


MULTISAMPLE_SUITES: Mapping[str, MultiSampleSpec] = MappingProxyType(
    {
        "humaneval-codegen16b": MultiSampleSpec(
            "humaneval-codegen16b",
            "humaneval_codegen16b.jsonl",
            "recorded",
            "HumanEval x CodeGen-16B-mono, 100 samples per prompt (CodeT); verifier = the "
            "recorded execution against HumanEval's own tests (an ORACLE verifier)",
        ),
        "game24-gpt4-standard": MultiSampleSpec(
            "game24-gpt4-standard",
            "game24_gpt4_standard.jsonl",
            "game24",
            "Game of 24 x GPT-4, standard 5-shot prompt, 100 samples per puzzle (Tree of "
            "Thoughts); verifier = a Game of 24 checker run on the candidate text",
        ),
        "game24-gpt4-cot": MultiSampleSpec(
            "game24-gpt4-cot",
            "game24_gpt4_cot.jsonl",
            "game24",
            "Game of 24 x GPT-4, chain-of-thought 5-shot prompt, 100 samples per puzzle (Tree "
            "of Thoughts); verifier = a Game of 24 checker run on the candidate text",
        ),
    }
)


@dataclass(frozen=True)
class MultiSamplePrompt:
    """One prompt with its recorded samples (texts and recorded correctness, in record order)."""

    prompt_id: str
    messages: tuple[Mapping[str, Any], ...]
    texts: tuple[str, ...]
    correct: tuple[bool, ...]
    numbers: tuple[int, ...] | None = None  # the Game of 24 puzzle, when it is one

    @property
    def success_rate(self) -> float:
        """Share of the recorded samples that are correct (0 when there are none)."""
        return sum(self.correct) / max(len(self.correct), 1)


@dataclass(frozen=True)
class MultiSampleSuite:
    """A suite's prompts; ``correct`` is the ``(n_prompts, n_samples)`` boolean matrix."""

    spec: MultiSampleSpec
    prompts: tuple[MultiSamplePrompt, ...]

    @property
    def correct(self) -> np.ndarray:
        """Recorded correctness, one row per prompt."""
        return np.asarray([p.correct for p in self.prompts], dtype=bool)

    def subset(self, indices: Sequence[int]) -> MultiSampleSuite:
        """The suite restricted to ``indices`` (in that order)."""
        return MultiSampleSuite(self.spec, tuple(self.prompts[i] for i in indices))


def _prompt(row: Mapping[str, Any]) -> MultiSamplePrompt:
    numbers = row.get("numbers")
    return MultiSamplePrompt(
        prompt_id=str(row["id"]),
        messages=tuple(dict(m) for m in row["messages"]),
        texts=tuple(str(s["text"]) for s in row["samples"]),
        correct=tuple(bool(s["correct"]) for s in row["samples"]),
        numbers=tuple(int(x) for x in str(numbers).split()) if numbers else None,
    )


def load_multisample(data_dir: Path, name: str) -> MultiSampleSuite:
    """Load one suite from ``data_dir/multisample/``; raises ``KeyError`` for an unknown name."""
    spec = MULTISAMPLE_SUITES[name]
    path = data_dir / "multisample" / spec.file
    with path.open(encoding="utf-8") as fh:
        prompts = tuple(_prompt(json.loads(line)) for line in fh if line.strip())
    return MultiSampleSuite(spec, prompts)
