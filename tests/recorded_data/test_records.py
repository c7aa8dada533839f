"""The real-data loader against the recorded files (``$ADAPTIVE_DATA_DIR`` or the bundle)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from recorded_data.records import (
    GSM8K_PROCEDURES,
    Record,
    extract_mtbench_answers,
    load_records,
)


@pytest.fixture(scope="module")
def raw(data_dir: Path) -> list[Record]:
    return load_records(data_dir, drop_contaminated=False)


@pytest.fixture(scope="module")
def clean(data_dir: Path) -> list[Record]:
    return load_records(data_dir)


def _joint(records: list[Record], dataset: str) -> Counter[str]:
    def letter(x: float) -> str:
        return "T" if x == 1.0 else "F"

    return Counter(
        letter(r.rewards["weak"]) + letter(r.rewards["strong"])
        for r in records
        if r.dataset == dataset
    )


def test_counts_per_dataset(raw: list[Record], clean: list[Record]) -> None:
    assert Counter(r.dataset for r in raw) == {"gsm8k": 1319, "mmlu": 14042, "mtbench": 160}
    # RouteLLM's contaminated prompts: 12 GSM8K, 5 MMLU, 8 MT-Bench questions (both turns).
    assert Counter(r.dataset for r in clean) == {"gsm8k": 1307, "mmlu": 14037, "mtbench": 144}


def test_joint_outcomes_match_data_readme(raw: list[Record]) -> None:
    assert _joint(raw, "gsm8k") == {"FF": 94, "FT": 383, "TF": 95, "TT": 747}
    assert _joint(raw, "mmlu") == {"FF": 1985, "FT": 2497, "TF": 742, "TT": 8818}


def test_gsm8k_joins_all_four_procedures(raw: list[Record]) -> None:
    gsm = [r for r in raw if r.dataset == "gsm8k"]
    assert all(set(r.rewards) == {"weak", "strong", *GSM8K_PROCEDURES} for r in gsm)
    assert all(set(r.responses) == set(r.rewards) and all(r.responses.values()) for r in gsm)
    accuracy = {p: sum(r.rewards[p] for r in gsm) / len(gsm) for p in GSM8K_PROCEDURES}
    # README: 21.7%, 39.0%, 34.7%, 56.3%.
    assert [round(100 * accuracy[p], 1) for p in GSM8K_PROCEDURES] == [21.7, 39.0, 34.7, 56.3]
    first = gsm[0]
    assert first.prompt.startswith("Janet’s ducks lay 16 eggs")
    assert "#### 18" in first.responses["weak"]
    assert "18" in str(first.extra["ground_truth"])


def test_mmlu_has_subject_and_no_text(raw: list[Record]) -> None:
    mmlu = [r for r in raw if r.dataset == "mmlu"]
    assert len({r.extra["subject"] for r in mmlu}) == 57
    assert all(not r.responses for r in mmlu)
    assert all(r.prompt.rstrip().endswith("Answer:") for r in mmlu[:50])


def test_mtbench_turns_and_answers(raw: list[Record]) -> None:
    mt = {r.prompt_id: r for r in raw if r.dataset == "mtbench"}
    t1, t2 = mt["mtbench/81/t1"], mt["mtbench/81/t2"]
    assert t1.group_id == t2.group_id == "mtbench/81"
    assert [m["role"] for m in t1.messages] == ["user"]
    assert [m["role"] for m in t2.messages] == ["user", "assistant", "user"]
    assert t2.messages[0] == t1.messages[0]
    assert t2.prompt.startswith("Rewrite your previous response. Start every sentence with")
    # Turn-2 history is GPT-4's own recorded turn-1 answer.
    assert t2.messages[1]["content"] == t1.responses["strong"]
    for record in mt.values():
        assert set(record.rewards) == {"weak", "strong"}
        assert all(0.0 <= v <= 1.0 for v in record.rewards.values())
        assert all(a.strip() for a in record.responses.values())
        for answer in record.responses.values():
            assert "### User:" not in answer and "[The End of" not in answer
            assert "### Assistant A:" not in answer
    # The turn-2 answer answers turn 2 (Hawaii post rewritten with sentences starting with A).
    assert t2.responses["strong"].lstrip("*# ").startswith("A")
    assert t1.responses["strong"] != t2.responses["strong"]


def test_extract_turn_one_and_two() -> None:
    t1 = (
        "[Question]\nQ1\n\n[The Start of Reference Answer]\nREF\n[The End of Reference Answer]\n\n"
        "[The Start of Assistant's Answer]\nA one\n[The End of Assistant's Answer]"
    )
    assert extract_mtbench_answers(t1, 1, ("Q1", "Q2")) == ("A one",)
    t2 = (
        "<|The Start of Reference Answer|>\n\n### User:\nQ1\n\n### Reference answer:\nREF\n\n"
        "<|The End of Reference Answer|>\n\n<|The Start of Assistant A's Conversation with User|>"
        "\n\n### User:\nQ1\n\n### Assistant A:\nfirst\n### User: quoted\n\n### User:\nQ2\n\n"
        "### Assistant A:\nsecond\n\n<|The End of Assistant A's Conversation with User|>"
    )
    assert extract_mtbench_answers(t2, 2, ("Q1", "Q2")) == ("first\n### User: quoted", "second")


def test_ids_unique_and_order_deterministic(clean: list[Record], data_dir: Path) -> None:
    assert len({r.prompt_id for r in clean}) == len(clean)
    again = load_records(data_dir, ("mtbench", "gsm8k"))
    assert [r.prompt_id for r in again] == [
        r.prompt_id for r in clean if r.dataset == "mtbench"
    ] + [r.prompt_id for r in clean if r.dataset == "gsm8k"]


def test_contaminated_prompts_dropped(clean: list[Record]) -> None:
    prompts = {" ".join(r.prompt.split()) for r in clean}
    ids = {r.prompt_id for r in clean}
    assert "gsm8k/0" not in ids and "gsm8k/3" in ids
    assert "mtbench/81/t1" not in ids and "mtbench/81/t2" not in ids
    assert not any(p.startswith("David has three sisters.") for p in prompts)


def test_unknown_dataset_rejected(data_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        load_records(data_dir, ["nope"])


def test_repeated_prompts_share_a_group(raw: list[Record]) -> None:
    mmlu = [r for r in raw if r.dataset == "mmlu"]
    repeats = [r for r in mmlu if r.group_id != r.prompt_id]
    assert len(repeats) == 105
    by_id = {r.prompt_id: r for r in mmlu}
    for record in repeats:
        assert by_id[record.group_id].prompt.split() == record.prompt.split()
    groups = Counter(r.group_id for r in raw if r.dataset == "mtbench")
    assert set(groups.values()) == {2}
