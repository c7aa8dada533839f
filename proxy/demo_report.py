"""The demo's verdicts and its closing comparison: adaptive vs all-cheap vs all-expensive.

Quality is the recorded reward of the model that answered (GSM8K and MMLU: 1 right, 0 wrong;
MT-Bench: the GPT-4 judge's score mapped to [0, 1]); cost is what the proxy accounted in USD
(upstream ``usage`` × the YAML prices), for the baselines too: they are real requests through the
proxy naming the upstream model, which passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from recorded_data.records import ARM_MODELS

_ARM_OF_MODEL = {model: arm for arm, model in ARM_MODELS.items()}
_CHEAP, _EXPENSIVE = ARM_MODELS["weak"], ARM_MODELS["strong"]


@dataclass(frozen=True)
class RoutedRow:
    """One prompt the demo routed: the record, the model that answered and the cost in USD."""

    record: Any
    model: str
    cost_usd: float


def recorded_reward(record: Any, model: str) -> float | None:
    """The recorded reward of ``model``'s answer to ``record``, if the data has it."""
    arm = _ARM_OF_MODEL.get(model)
    value = record.rewards.get(arm) if arm else None
    return None if value is None else float(value)


def verdict(record: Any, model: str) -> str:
    """``right`` / ``wrong`` (or the judge score on MT-Bench) by the recorded ground truth."""
    reward = recorded_reward(record, model)
    if reward is None:
        return "not recorded"
    if record.dataset == "mtbench":
        return f"judge {round(reward * 9 + 1)}/10"
    return "right" if reward >= 1.0 else "wrong"


async def _baseline(client: Any, model: str, records: Sequence[Any]) -> float | None:
    total_usd = 0.0
    for record in records:
        completion = await client.chat.completions.create(
            model=model, messages=list(record.messages)
        )
        adaptive = (completion.model_extra or {}).get("adaptive", {})
        total_usd += float(adaptive.get("cost_usd") or 0.0)
    return total_usd


def _quality(rows: Sequence[tuple[Any, str]]) -> str:
    rewards = [recorded_reward(record, model) for record, model in rows]
    known = [r for r in rewards if r is not None]
    if not known:
        return "n/a"
    return f"{sum(known) / len(known):.2f}"


async def print_comparison(client: Any, rows: Sequence[RoutedRow]) -> None:
    """Send the same prompts to the cheap and to the expensive model; print the three options."""
    import openai

    records = [row.record for row in rows]
    try:
        cheap_usd = await _baseline(client, _CHEAP, records)
        expensive_usd = await _baseline(client, _EXPENSIVE, records)
    except openai.APIError as exc:  # a custom --config without these upstream models
        print(f"\n(no comparison: the config does not serve {_CHEAP} and {_EXPENSIVE}: {exc})")
        return
    to_expensive = sum(1 for row in rows if row.model == _EXPENSIVE)
    options = (
        ("all cheap (Mixtral)", _quality([(r, _CHEAP) for r in records]), cheap_usd),
        (
            f"adaptive ({to_expensive}/{len(rows)} to GPT-4)",
            _quality([(row.record, row.model) for row in rows]),
            sum(row.cost_usd for row in rows),
        ),
        ("all expensive (GPT-4)", _quality([(r, _EXPENSIVE) for r in records]), expensive_usd),
    )
    print(f"\non these {len(rows)} prompts (mean recorded reward; cost accounted by the proxy):")
    print(f"{'':<28} {'quality':>7} {'cost USD':>10}")
    for name, quality, cost_usd in options:
        print(f"{name:<28} {quality:>7} {cost_usd:>10.5f}")
