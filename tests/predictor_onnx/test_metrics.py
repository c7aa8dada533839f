"""APGR / CPT / AUC / Brier / ECE on hand-checkable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from predictor_onnx.metrics import auc, brier, ece, routing_scores


def test_oracle_ranking_reaches_full_pgr_at_the_fraction_that_gains() -> None:
    weak = np.array([0, 0, 1, 1])
    strong = np.array([1, 1, 1, 0])
    scores = routing_scores(strong - weak, weak, strong, split_ties=True)
    # q_weak = 0.5, q_strong = 0.75; sending prompt 0 alone gives q = 0.75: PGR = 1 at c = 1/4.
    # CPT interpolates between sweep points (RouteLLM's definition, shared with the benchmark:
    # tests/bench/routing/test_metrics.py asserts the same figures on the same prompts).
    assert scores.cpt50 == 0.125
    assert scores.cpt80 == pytest.approx(0.2)


def test_reversed_ranking_scores_below_random() -> None:
    weak = np.array([0, 0, 0, 1, 1])
    strong = np.array([1, 1, 0, 1, 1])
    good = routing_scores(np.array([5, 4, 3, 2, 1]), weak, strong)
    bad = routing_scores(-np.array([5, 4, 3, 2, 1]), weak, strong)
    assert good.apgr > 0.5 > bad.apgr


def test_equal_arms_give_nan_not_an_error() -> None:
    r = np.array([1, 0, 1])
    assert math.isnan(routing_scores(np.array([0.1, 0.2, 0.3]), r, r).apgr)


def test_auc_with_ties_and_single_class() -> None:
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert auc([0.5, 0.5], [0, 1]) == 0.5
    assert math.isnan(auc([0.1, 0.2], [1, 1]))


def test_brier_and_ece() -> None:
    assert brier([1.0, 0.0], [1, 0]) == 0.0
    assert math.isclose(brier([0.5, 0.5], [1, 0]), 0.25)
    assert math.isclose(ece([0.25] * 4, [1, 0, 0, 0]), 0.0)
    assert math.isclose(ece([0.9] * 2, [0, 0]), 0.9)
