"""Loaders of the datasets beyond RouteLLM's: multi-sample suites and the AlpacaEval ladder.

* ``multisample/humaneval_codegen16b.jsonl`` → dataset ``humaneval``, arm ``codegen16b``:
  CodeGen-16B-mono, 100 samples per HumanEval prompt; the reward is the prompt's empirical
  success rate (share of samples passing the tests), far less noisy than one draw.
* ``multisample/game24_gpt4_{standard,cot}.jsonl`` → dataset ``game24``, arm ``gpt4_game24``:
  GPT-4 (0314), 100 samples per puzzle under two prompts (5-shot standard and chain of thought);
  reward = empirical success rate. Both prompts of a puzzle share a CV group.
* ``alpaca_eval/ladder.jsonl`` → dataset ``alpaca_eval``: 805 instructions, one arm per model
  (15, named after the model, e.g. ``llama_2_70b_chat``), reward = the GPT-4 judge's win over
  text-davinci-003 (1 win, 0.5 tie, 0 loss). 55 of the 12,059 judgements are recorded as -1
  (no valid preference); that arm is left unobserved on that prompt. Any (cheap, strong) pair of
  the ladder is a gain label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from recorded_data.multisample import MultiSamplePrompt, load_multisample
from recorded_data.records import DATASETS, Record, load_records

#: Every dataset the predictor trains on: RouteLLM's, then this module's.
ALL_DATASETS: tuple[str, ...] = (*DATASETS, "humaneval", "game24", "alpaca_eval")

#: Datasets of this module: name -> arms it observes.
MULTISAMPLE_ARMS: dict[str, str] = {"humaneval": "codegen16b", "game24": "gpt4_game24"}


def alpaca_arm(model: str) -> str:
    """The arm name of an AlpacaEval model (``llama-2-70b-chat-hf`` → ``llama_2_70b_chat``)."""
    name = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")
    return name.removesuffix("_hf")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _success_rate_record(
    prompt: MultiSamplePrompt,
    dataset: str,
    prompt_id: str,
    group_id: str,
    extra: Mapping[str, Any] | None = None,
) -> Record:
    """A multi-sample prompt as a record: its suite's arm rewarded with the success rate."""
    return Record(
        dataset=dataset,
        prompt_id=prompt_id,
        group_id=group_id,
        messages=tuple(dict(m) for m in prompt.messages),
        rewards=MappingProxyType({MULTISAMPLE_ARMS[dataset]: prompt.success_rate}),
        extra=MappingProxyType({**(extra or {}), "n_samples": len(prompt.correct)}),
    )


def load_humaneval(data_dir: Path, *, drop_contaminated: bool = True) -> list[Record]:
    """HumanEval prompts with CodeGen-16B's empirical pass rate over 100 samples."""
    del drop_contaminated
    return [
        _success_rate_record(
            prompt, "humaneval", f"humaneval/{prompt.prompt_id}", f"humaneval/{prompt.prompt_id}"
        )
        for prompt in load_multisample(data_dir, "humaneval-codegen16b").prompts
    ]


def load_game24(data_dir: Path, *, drop_contaminated: bool = True) -> list[Record]:
    """Game of 24 puzzles (two prompts each) with GPT-4's empirical success rate."""
    del drop_contaminated
    records: list[Record] = []
    for style in ("standard", "cot"):
        for prompt in load_multisample(data_dir, f"game24-gpt4-{style}").prompts:
            puzzle = " ".join(str(n) for n in prompt.numbers or ())
            prompt_id, group_id = f"{prompt.prompt_id}/{style}", f"game24/{puzzle}"
            records.append(
                _success_rate_record(prompt, "game24", prompt_id, group_id, {"style": style})
            )
    return records


def load_alpaca_ladder_rows(data_dir: Path) -> list[dict[str, Any]]:
    """The AlpacaEval ladder's rows as recorded: ``id``, ``messages``, ``dataset`` and
    ``models`` (model → ``win`` over text-davinci-003, -1 for no valid preference, and
    ``output``, its answer); a model whose judgement was not recorded is absent from ``models``.
    """
    return list(_read_jsonl(data_dir / "alpaca_eval" / "ladder.jsonl"))


def load_alpaca_eval(data_dir: Path, *, drop_contaminated: bool = True) -> list[Record]:
    """AlpacaEval instructions with each ladder model's judged win over text-davinci-003."""
    del drop_contaminated
    records: list[Record] = []
    for row in load_alpaca_ladder_rows(data_dir):
        models = row["models"]
        records.append(
            Record(
                dataset="alpaca_eval",
                prompt_id=str(row["id"]),
                group_id=str(row["id"]),
                messages=tuple(dict(m) for m in row["messages"]),
                rewards=MappingProxyType(
                    {
                        alpaca_arm(m): float(v["win"])
                        for m, v in sorted(models.items())
                        if 0.0 <= float(v["win"]) <= 1.0
                    }
                ),
                responses=MappingProxyType(
                    {alpaca_arm(m): str(v.get("output", "")) for m, v in sorted(models.items())}
                ),
                extra=MappingProxyType({"source": row.get("dataset", "")}),
            )
        )
    return records


def load_every_dataset(
    data_dir: Path, datasets: Sequence[str] = ALL_DATASETS, *, drop_contaminated: bool = True
) -> list[Record]:
    """Records of ``datasets`` (RouteLLM's through :func:`~recorded_data.records.load_records`)."""
    loaders = {"humaneval": load_humaneval, "game24": load_game24, "alpaca_eval": load_alpaca_eval}
    unknown = [n for n in datasets if n not in loaders and n not in DATASETS]
    if unknown:
        raise ValueError(
            f"unknown dataset {unknown[0]!r}; expected one of {', '.join(ALL_DATASETS)}"
        )
    records = load_records(
        data_dir, [n for n in datasets if n in DATASETS], drop_contaminated=drop_contaminated
    )
    for name in datasets:
        if name in loaders:
            records.extend(loaders[name](Path(data_dir), drop_contaminated=drop_contaminated))
    return records
