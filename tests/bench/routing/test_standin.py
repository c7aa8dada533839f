"""The stand-in predictor never predicts a prompt with a model that saw it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from bench.routing.standin import _fold_of_groups, out_of_fold_predictions
from bench.routing.suites import subsample_records


def _records(data_dir: Path) -> list:  # type: ignore[type-arg]
    from recorded_data.records import load_records

    recs = load_records(data_dir)
    by: dict[str, list] = {}  # type: ignore[type-arg]
    for r in recs:
        by.setdefault(r.dataset, []).append(r)
    sizes = {"gsm8k": 30, "mmlu": 30, "mtbench": 10}
    return [r for ds, rs in by.items() for r in subsample_records(rs, sizes[ds])]


def test_groups_stay_in_one_fold() -> None:
    folds = _fold_of_groups(["a", "b", "a", "c", "b"], 2, seed=0)
    assert folds[0] == folds[2] and folds[1] == folds[4]


def _flipped(record: Any) -> Any:
    flipped = {k: 1.0 - v for k, v in record.rewards.items()}
    return dataclasses.replace(record, rewards=MappingProxyType(flipped))


@pytest.mark.parametrize("scheme", ["cv", "lodo"])
def test_a_prompts_own_outcome_never_changes_its_prediction(scheme: str, data_dir: Path) -> None:
    records = _records(data_dir)
    base = out_of_fold_predictions(records, scheme=scheme, progress=False)
    assert set(base) == {r.prompt_id for r in records}
    # cv: flip one GSM8K question's outcomes; lodo: flip every GSM8K outcome. The flipped
    # prompts' own predictions must not move.
    gsm = [i for i, r in enumerate(records) if r.dataset == "gsm8k"]
    flip = gsm[:1] if scheme == "cv" else gsm
    changed = [_flipped(r) if i in flip else r for i, r in enumerate(records)]
    again = out_of_fold_predictions(changed, scheme=scheme, progress=False)
    for i in flip:
        pid = records[i].prompt_id
        assert again[pid] == pytest.approx(base[pid])
    row = base[records[gsm[0]].prompt_id]
    assert row["gain"] == pytest.approx(row["p_strong"] - row["p_weak"])
    assert all(0.0 <= row[f"p_{a}"] <= 1.0 for a in ("weak", "strong", "175b_verification"))
