"""Typed loader for the real recorded evaluation data (found by :mod:`recorded_data`).

Every prompt becomes one :class:`Record`: the OpenAI ``messages`` a client would send, the
recorded reward of each decoding arm, and the recorded answer text where the data has it.

Sources (see the data README):

* ``routellm/gsm8k/gsm8k_responses.csv`` — 1,319 GSM8K test questions with the correctness and
  full answer of Mixtral (``weak``) and GPT-4 (``strong``). Joined by question text (whitespace
  normalised) to ``gsm8k/example_model_solutions.jsonl``, which adds four OpenAI decoding
  procedures (``6b_finetuning``, ``6b_verification``, ``175b_finetuning``,
  ``175b_verification``). All 1,319 rows join, and both files list them in the same order.
* ``routellm/mmlu/mmlu_<subject>.csv`` — 57 files, 14,042 questions, binary outcome per model;
  no answer text was recorded.
* ``routellm/mt_bench/question.jsonl`` + ``judgements.jsonl`` — 80 two-turn questions; the GPT-4
  judge score (1–10) per question, model and turn becomes the reward ``(score - 1) / 9``. The
  assistants' answers are recovered from the judge prompts (see :func:`extract_mtbench_answers`).

MT-Bench turn 2 is the conversation ``[user t1, assistant a1, user t2]`` where ``a1`` is GPT-4's
recorded turn-1 answer. A client sends one history, whichever model produced it, and any recorded
history is a realistic one; the replay upstream keys turn-2 lookups on the user turns only, so
the choice of ``a1`` never changes which recorded turn-2 answer is served. Each arm's turn-2
reward is the judge's score of that arm's own turn-2 answer.

Contaminated prompts (``*/contaminated_prompts.jsonl``, field ``eval_prompt``) are the prompts
RouteLLM's authors found in their router training data; their benchmark drops them and so do
we by default (GSM8K 12, MMLU 5, MT-Bench 8 questions = 16 records). An MT-Bench question is
dropped with both of its turns so the two turns never split across CV folds.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

MODEL_WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
MODEL_STRONG = "gpt-4-1106-preview"
#: RouteLLM's datasets (the benchmark's suites and the replay upstream's records).
DATASETS: tuple[str, ...] = ("gsm8k", "mmlu", "mtbench")

GSM8K_PROCEDURES: tuple[str, ...] = (
    "6b_finetuning",
    "6b_verification",
    "175b_finetuning",
    "175b_verification",
)
ARM_MODELS: Mapping[str, str] = MappingProxyType({"weak": MODEL_WEAK, "strong": MODEL_STRONG})

_T1_START = "[The Start of Assistant's Answer]"
_T1_END = "[The End of Assistant's Answer]"
_T2_START = "<|The Start of Assistant A's Conversation with User|>"
_T2_END = "<|The End of Assistant A's Conversation with User|>"
_USER = "### User:"
_ASSISTANT = "### Assistant A:"


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Record:
    """One prompt with the recorded reward (and answer, where known) of each decoding arm."""

    dataset: str
    prompt_id: str
    group_id: str  # CV grouping key: shared by both MT-Bench turns and by repeated prompts
    messages: tuple[dict[str, Any], ...]
    rewards: Mapping[str, float]
    responses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def prompt(self) -> str:
        """The last user message text (what the replay upstream keys its lookup on)."""
        return str(self.messages[-1]["content"])


def normalize_ws(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def _bool(value: str) -> float:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"expected True/False, got {value!r}")
    return 1.0 if lowered == "true" else 0.0


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _contaminated(path: Path, drop: bool = True) -> frozenset[str]:
    if not drop or not path.is_file():
        return frozenset()
    return frozenset(normalize_ws(str(row["eval_prompt"])) for row in _read_jsonl(path))


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def load_gsm8k(data_dir: Path, *, drop_contaminated: bool = True) -> list[Record]:
    """GSM8K: Mixtral/GPT-4 (RouteLLM) joined with the four OpenAI procedures by question text."""
    csv_path = data_dir / "routellm" / "gsm8k" / "gsm8k_responses.csv"
    solutions: dict[str, dict[str, Any]] = {}
    sol_path = data_dir / "gsm8k" / "example_model_solutions.jsonl"
    if sol_path.is_file():
        for row in _read_jsonl(sol_path):
            solutions.setdefault(normalize_ws(row["question"]), row)
    dropped = _contaminated(csv_path.parent / "contaminated_prompts.jsonl", drop_contaminated)
    records: list[Record] = []
    with csv_path.open(encoding="utf-8", newline="") as fh:
        for index, row in enumerate(csv.DictReader(fh)):
            prompt = row["prompt"]
            key = normalize_ws(prompt)
            if key in dropped:
                continue
            rewards = {"weak": _bool(row[MODEL_WEAK]), "strong": _bool(row[MODEL_STRONG])}
            responses = {
                "weak": row[f"{MODEL_WEAK}_response"],
                "strong": row[f"{MODEL_STRONG}_response"],
            }
            extra: dict[str, Any] = {"row": index}
            sol = solutions.get(key)
            if sol is not None:
                for proc in GSM8K_PROCEDURES:
                    rewards[proc] = 1.0 if sol[proc]["is_correct"] else 0.0
                    responses[proc] = sol[proc]["solution"]
                extra["ground_truth"] = sol["ground_truth"]
            pid = f"gsm8k/{index}"
            records.append(
                Record(
                    "gsm8k",
                    pid,
                    pid,
                    (_user(prompt),),
                    _frozen(rewards),
                    _frozen(responses),
                    _frozen(extra),
                )
            )
    return records


def load_mmlu(data_dir: Path, *, drop_contaminated: bool = True) -> list[Record]:
    """MMLU: one binary outcome per model for each question of the 57 subject files."""
    folder = data_dir / "routellm" / "mmlu"
    dropped = _contaminated(folder / "contaminated_prompts.jsonl", drop_contaminated)
    records: list[Record] = []
    for path in sorted(folder.glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        with path.open(encoding="utf-8", newline="") as fh:
            for index, row in enumerate(csv.DictReader(fh)):
                prompt = row["prompt"]
                if normalize_ws(prompt) in dropped:
                    continue
                rewards = {"weak": _bool(row[MODEL_WEAK]), "strong": _bool(row[MODEL_STRONG])}
                pid = f"mmlu/{subject}/{index}"
                records.append(
                    Record(
                        "mmlu",
                        pid,
                        pid,
                        (_user(prompt),),
                        _frozen(rewards),
                        MappingProxyType({}),
                        _frozen({"subject": subject, "row": index}),
                    )
                )
    return records


def _between(text: str, start: str, end: str) -> str:
    i = text.find(start)
    j = text.rfind(end)
    if i < 0 or j < 0 or j < i:
        raise ValueError(f"judge prompt lacks {start!r} … {end!r}")
    return text[i + len(start) : j]


def extract_mtbench_answers(user_prompt: str, turn: int, turns: tuple[str, str]) -> tuple[str, ...]:
    """The assistant's answers quoted in an MT-Bench judge prompt (FastChat templates).

    Turn 1 (``single-v1`` / ``single-math-v1``): the text between ``[The Start of Assistant's
    Answer]`` and ``[The End of Assistant's Answer]`` → ``(a1,)``. Turn 2 (``*-multi-turn``): the
    conversation block ``### User: q1 / ### Assistant A: a1 / ### User: q2 / ### Assistant A:
    a2`` → ``(a1, a2)``. The split anchors on the known question texts, so an answer that
    itself contains ``### User:`` cannot shift the boundaries; the reference-answer block (math
    questions) lies outside the conversation block and is never read.
    """
    if turn == 1:
        return (_between(user_prompt, _T1_START, _T1_END).strip(),)
    block = _between(user_prompt, _T2_START, _T2_END)
    q1, q2 = turns
    head = f"{_USER}\n{q1}\n\n{_ASSISTANT}\n"
    mid = f"\n\n{_USER}\n{q2}\n\n{_ASSISTANT}\n"
    i = block.find(head)
    j = block.rfind(mid)
    if i < 0 or j < 0 or j < i:
        # Question text not verbatim in the prompt: fall back to the markers themselves.
        parts = block.split(f"{_ASSISTANT}\n")
        if len(parts) != 3:
            raise ValueError("cannot locate both assistant turns in the judge prompt")
        a1 = parts[1].rsplit(_USER, 1)[0]
        return (a1.strip(), parts[2].strip())
    return (block[i + len(head) : j].strip(), block[j + len(mid) :].strip())


def load_mtbench(data_dir: Path, *, drop_contaminated: bool = True) -> list[Record]:
    """MT-Bench: two records per question (turn 1, turn 2), rewards from the judge scores."""
    folder = data_dir / "routellm" / "mt_bench"
    dropped = _contaminated(folder / "contaminated_prompts.jsonl", drop_contaminated)
    questions = list(_read_jsonl(folder / "question.jsonl"))
    arm_of = {model: arm for arm, model in ARM_MODELS.items()}
    # (question_id, turn) -> arm -> (reward, answer given in that turn)
    judged: dict[tuple[int, int], dict[str, tuple[float, str]]] = {}
    first_answer: dict[tuple[int, str], str] = {}
    by_qid = {int(q["question_id"]): q for q in questions}
    for row in _read_jsonl(folder / "judgements.jsonl"):
        arm = arm_of.get(row["model"])
        qid, turn = int(row["question_id"]), int(row["turn"])
        if arm is None or qid not in by_qid or float(row["score"]) < 1:
            continue  # score -1 marks a judge failure in FastChat; none in this data
        turns = by_qid[qid]["turns"]
        answers = extract_mtbench_answers(row["user_prompt"], turn, (turns[0], turns[1]))
        reward = (float(row["score"]) - 1.0) / 9.0
        judged.setdefault((qid, turn), {})[arm] = (reward, answers[-1])
        if turn == 1 or (qid, arm) not in first_answer:
            first_answer[(qid, arm)] = answers[0]
    records: list[Record] = []
    for q in questions:
        qid, turns = int(q["question_id"]), [str(t) for t in q["turns"]]
        if any(normalize_ws(t) in dropped for t in turns):
            continue
        group = f"mtbench/{qid}"
        for turn in (1, 2):
            arms = judged.get((qid, turn), {})
            if turn == 1:
                messages: tuple[dict[str, Any], ...] = (_user(turns[0]),)
            else:
                history = first_answer.get((qid, "strong"))
                if history is None:
                    continue
                messages = (
                    _user(turns[0]),
                    {"role": "assistant", "content": history},
                    _user(turns[1]),
                )
            records.append(
                Record(
                    "mtbench",
                    f"{group}/t{turn}",
                    group,
                    messages,
                    _frozen({arm: r for arm, (r, _) in sorted(arms.items())}),
                    _frozen({arm: a for arm, (_, a) in sorted(arms.items())}),
                    _frozen({"question_id": qid, "category": q.get("category", ""), "turn": turn}),
                )
            )
    return records


_LOADERS = {"gsm8k": load_gsm8k, "mmlu": load_mmlu, "mtbench": load_mtbench}


def load_records(
    data_dir: Path,
    datasets: Iterable[str] = DATASETS,
    *,
    drop_contaminated: bool = True,
) -> list[Record]:
    """All records of ``datasets`` in a deterministic order (dataset order, then file order).

    Records whose user turns are identical share the ``group_id`` of the first one, so that a
    grouped cross-validation never puts the same prompt on both sides (MMLU repeats 105
    questions, 78 of them between ``clinical_knowledge`` and ``college_medicine``; 4 of the
    repeats have different recorded outcomes).
    """
    data_dir = Path(data_dir)
    out: list[Record] = []
    for name in datasets:
        if name not in _LOADERS:
            raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
        out.extend(_LOADERS[name](data_dir, drop_contaminated=drop_contaminated))
    first_group: dict[str, str] = {}
    for i, record in enumerate(out):
        key = "\x00".join(
            normalize_ws(str(m["content"])) for m in record.messages if m["role"] == "user"
        )
        group = first_group.setdefault(key, record.group_id)
        if group != record.group_id:
            out[i] = replace(record, group_id=group)
    return out
