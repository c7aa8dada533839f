"""Small pieces of the benchmark runner: predictor choice and the lodo transfer."""

from __future__ import annotations

import numpy as np

from bench.routing.evaluate import decisions_bits
from bench.routing.runner import LODO_TRANSFER, fill_lodo_transfer, resolve_predictor


def test_features_predictor_is_the_labelled_stand_in() -> None:
    label, fn = resolve_predictor("features")
    assert "STAND-IN" in label and callable(fn)


def test_lodo_transfer_fills_only_missing_outputs() -> None:
    preds = {
        "a": {"p_weak": 0.2, "p_strong": 0.7, "gain": 0.5},
        "b": {
            "p_weak": 0.1,
            "p_strong": 0.2,
            "gain": 0.1,
            "gain_175b": 0.3,
            "p_6b_finetuning": 0.0,
            "p_6b_verification": 0.0,
            "p_175b_finetuning": 0.0,
            "p_175b_verification": 0.0,
            "gain_6b": 0.0,
        },
    }
    assert fill_lodo_transfer(preds) == 1
    assert set(LODO_TRANSFER) <= set(preds["a"])
    assert preds["a"]["gain_175b"] == 0.5 and preds["a"]["p_175b_verification"] == 0.7
    assert preds["b"]["gain_175b"] == 0.3  # present values are kept


def test_decision_bits_are_monotone_in_the_budget() -> None:
    bits = decisions_bits(np.array([0.9, 0.1, 0.5, 0.3]))
    assert all(len(b) == 21 for b in bits)
    assert bits[0].startswith("0") and bits[0].endswith("1")
    for b in bits:  # once a prompt goes expensive it stays expensive at larger budgets
        assert "10" not in b
    assert bits[0].index("1") < bits[2].index("1") < bits[3].index("1") < bits[1].index("1")
