"""Your own training data: a JSONL of conversations and the rewards your arms earned on them.

One JSON object per line::

    {"messages": [{"role": "user", "content": "..."}],   # required: an OpenAI messages list
     "rewards": {"cheap": 0, "expensive": 1},            # required: reward per arm, in [0, 1]
     "id": "q17",                                        # optional: unique id (default: line no.)
     "group": "q17",                                     # optional: CV group (one conversation)
     "dataset": "support"}                               # optional: enables leave-one-dataset-out

Rewards are binary (did the arm's answer succeed?) or graded scores normalised to [0, 1]. A line
may omit arms it did not run; the loss ignores them. Derived gains are ``NAME=EXPENSIVE-CHEAP``
pairs; by default ``gain = strong - weak`` when both arms exist, else (with exactly two arms)
``gain = <second arm> - <first arm>`` in the order the first line lists them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from recorded_data.records import Record


class CustomDataError(ValueError):
    """A line of the user's JSONL does not follow the documented format."""


def load_jsonl_records(path: Path) -> tuple[list[Record], tuple[str, ...]]:
    """Records of a user JSONL file and the arms in first-seen order."""
    records: list[Record] = []
    arms: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CustomDataError(f"{path}:{lineno}: not JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise CustomDataError(f"{path}:{lineno}: expected a JSON object")
            messages = obj.get("messages")
            rewards = obj.get("rewards")
            if not isinstance(messages, list):
                raise CustomDataError(f"{path}:{lineno}: 'messages' must be a list")
            if not isinstance(rewards, dict) or not rewards:
                raise CustomDataError(f"{path}:{lineno}: 'rewards' must be a non-empty object")
            clean: dict[str, float] = {}
            for arm, value in rewards.items():
                if isinstance(value, bool):
                    value = float(value)
                if not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
                    raise CustomDataError(
                        f"{path}:{lineno}: reward of arm {arm!r} must be a number in [0, 1]"
                    )
                clean[str(arm)] = float(value)
                if str(arm) not in arms:
                    arms.append(str(arm))
            prompt_id = str(obj.get("id", f"line{lineno}"))
            records.append(
                Record(
                    dataset=str(obj.get("dataset", "custom")),
                    prompt_id=prompt_id,
                    group_id=str(obj.get("group", prompt_id)),
                    messages=tuple(m for m in messages if isinstance(m, dict)),
                    rewards=MappingProxyType(clean),
                    responses=MappingProxyType({}),
                    extra=MappingProxyType({}),
                )
            )
    if not records:
        raise CustomDataError(f"{path}: no records")
    if len({r.prompt_id for r in records}) != len(records):
        raise CustomDataError(f"{path}: 'id' values must be unique")
    return records, tuple(arms)


def parse_gains(specs: Sequence[str], arms: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``NAME=HI-LO`` specs (or the documented default) as ``{name: (hi, lo)}``."""
    gains: dict[str, tuple[str, str]] = {}
    for spec in specs:
        name, sep, pair = spec.partition("=")
        hi, sep2, lo = pair.partition("-")
        if not sep or not sep2 or hi not in arms or lo not in arms:
            raise CustomDataError(
                f"gain {spec!r}: expected NAME=ARM-ARM with arms from {list(arms)}"
            )
        gains[name] = (hi, lo)
    if gains:
        return gains
    if "strong" in arms and "weak" in arms:
        return {"gain": ("strong", "weak")}
    if len(arms) == 2:
        return {"gain": (arms[1], arms[0])}
    return {}


def describe_records(records: Sequence[Record]) -> dict[str, Any]:
    """Counts per dataset and mean reward per arm, for the model card."""
    summary: dict[str, Any] = {}
    for rec in records:
        entry = summary.setdefault(rec.dataset, {"n": 0, "reward_sum": {}, "reward_n": {}})
        entry["n"] += 1
        for arm, value in rec.rewards.items():
            entry["reward_sum"][arm] = entry["reward_sum"].get(arm, 0.0) + value
            entry["reward_n"][arm] = entry["reward_n"].get(arm, 0) + 1
    return {
        name: {
            "n": e["n"],
            "mean_reward": {a: e["reward_sum"][a] / e["reward_n"][a] for a in e["reward_sum"]},
        }
        for name, e in summary.items()
    }
