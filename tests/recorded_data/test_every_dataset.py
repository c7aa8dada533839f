"""Loaders of the multi-sample suites and the AlpacaEval ladder against the recorded files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from predictor_onnx.schema import ALPACA_ARMS
from recorded_data.every_dataset import alpaca_arm, load_every_dataset


def test_every_dataset_loads_with_its_arms(data_dir: Path) -> None:
    records = load_every_dataset(data_dir)
    counts = Counter(r.dataset for r in records)
    assert counts["humaneval"] == 164 and counts["game24"] == 200
    assert counts["alpaca_eval"] == 805
    assert len({r.prompt_id for r in records}) == len(records)
    arms = {a for r in records if r.dataset == "alpaca_eval" for a in r.rewards}
    assert arms == set(ALPACA_ARMS)


def test_multisample_label_is_the_empirical_success_rate(data_dir: Path) -> None:
    records = load_every_dataset(data_dir, ("humaneval", "game24"))
    humaneval = [r.rewards["codegen16b"] for r in records if r.dataset == "humaneval"]
    assert abs(sum(humaneval) / len(humaneval) - 0.221) < 0.005  # the data README's figure
    assert any(0.0 < x < 1.0 for x in humaneval)
    game24 = [r for r in records if r.dataset == "game24"]
    # Both prompts of one puzzle share a group, so CV never splits a puzzle.
    assert len({r.group_id for r in game24}) == 100


def test_alpaca_wins_and_arm_names(data_dir: Path) -> None:
    assert alpaca_arm("llama-2-70b-chat-hf") == "llama_2_70b_chat"
    assert alpaca_arm("gpt-3.5-turbo-1106") == "gpt_3_5_turbo_1106"
    records = load_every_dataset(data_dir, ("alpaca_eval",))
    wins = [r.rewards["gpt4_1106_preview"] for r in records if "gpt4_1106_preview" in r.rewards]
    assert set(wins) <= {0.0, 0.5, 1.0}
    assert 0.95 < sum(wins) / len(wins) < 0.98
