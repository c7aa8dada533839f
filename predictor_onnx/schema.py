"""Names shared by training, the shipped model and the runtime: arms, outputs, derived gains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Arms of the shipped predictor, in the head's output order.
DEFAULT_ARMS: tuple[str, ...] = (
    "weak",
    "strong",
    "6b_finetuning",
    "6b_verification",
    "175b_finetuning",
    "175b_verification",
)
#: AlpacaEval models, cheapest-looking first as the data's README lists them, as arm names.
ALPACA_ARMS: tuple[str, ...] = (
    "falcon_7b_instruct",
    "phi_2",
    "llama_2_7b_chat",
    "zephyr_7b_beta",
    "llama_2_13b_chat",
    "yi_34b_chat",
    "llama_2_70b_chat",
    "tulu_2_dpo_70b",
    "gpt_3_5_turbo_0301",
    "gpt_3_5_turbo_1106",
    "mistral_medium",
    "claude_2",
    "gpt4_0314",
    "gpt4",
    "gpt4_1106_preview",
)
#: Arms of every recorded dataset: the above, the multi-sample suites' models (label: empirical
#: success rate) and the 15 AlpacaEval models (label: judged win).
ALL_ARMS: tuple[str, ...] = (*DEFAULT_ARMS, "codegen16b", "gpt4_game24", *ALPACA_ARMS)
#: Derived gains: name -> (expensive arm, cheap arm); gain = p_expensive - p_cheap.
DEFAULT_GAINS: dict[str, tuple[str, str]] = {
    "gain": ("strong", "weak"),
    "gain_6b": ("6b_verification", "6b_finetuning"),
    "gain_175b": ("175b_verification", "175b_finetuning"),
    "gain_chat": ("gpt4_1106_preview", "llama_2_70b_chat"),
}


def output_names(arms: Sequence[str], gains: Mapping[str, tuple[str, str]]) -> tuple[str, ...]:
    """``p_<arm>`` for every arm, then the gains whose two arms both exist."""
    names = [f"p_{a}" for a in arms]
    names += [g for g, (hi, lo) in gains.items() if hi in arms and lo in arms]
    return tuple(names)


def named_outputs(
    probs: Any, arms: Sequence[str], gains: Mapping[str, tuple[str, str]]
) -> list[dict[str, float]]:
    """Rows of ``probs`` (N, len(arms)) as dicts with the derived gains added."""
    out: list[dict[str, float]] = []
    for row in probs:
        values = {f"p_{a}": float(v) for a, v in zip(arms, row, strict=True)}
        for name, (hi, lo) in gains.items():
            if f"p_{hi}" in values and f"p_{lo}" in values:
                values[name] = values[f"p_{hi}"] - values[f"p_{lo}"]
        out.append(values)
    return out
