"""The transfer evaluation: c-index, ladder pairs, and held-out cells on a synthetic design."""

from __future__ import annotations

import numpy as np

from predictor_onnx.evaluate import Design
from predictor_onnx.heads import HeadConfig
from predictor_onnx.methods import per_arm, shared_gain
from predictor_onnx.transfer import c_index, evaluate_method, ladder_pairs, transfer_table


def test_c_index_counts_concordant_pairs() -> None:
    assert c_index([1, 2, 3], [0.1, 0.2, 0.3]) == 1.0
    assert c_index([3, 2, 1], [0.1, 0.2, 0.3]) == 0.0
    assert c_index([1, 1, 1], [0.1, 0.2, 0.3]) == 0.5


def _design(seed: int = 0) -> Design:
    """Two RouteLLM-like datasets whose gain follows the first embedding coordinate."""
    rng = np.random.default_rng(seed)
    n = 400
    x = rng.normal(size=(n, 9)).astype(np.float32)
    x[:, 8] = rng.normal(size=n)  # one hand-made feature
    gain_prob = 1 / (1 + np.exp(-3 * x[:, 0]))
    weak = (rng.random(n) < 0.5).astype(np.float32)
    strong = np.maximum(weak, rng.random(n) < gain_prob).astype(np.float32)
    y = np.stack([weak, strong], 1)
    datasets = tuple("gsm8k" if i < n // 2 else "mmlu" for i in range(n))
    return Design(
        x=x,
        y=y,
        mask=np.ones_like(y),
        arms=("weak", "strong"),
        datasets=datasets,
        groups=tuple(str(i) for i in range(n)),
        prompt_ids=tuple(str(i) for i in range(n)),
        n_embed=8,
    )


def test_ladder_pairs_order_arms_by_mean_reward() -> None:
    design = _design()
    assert ladder_pairs(design, np.ones(len(design.x), dtype=bool)) == [("strong", "weak")]


def test_held_out_cells_find_a_learnable_gain() -> None:
    design = _design()
    cfg = HeadConfig(kind="linear", l2=1e-3, linear_features=(0,))
    results = {}
    for name, method in (
        ("per arm", per_arm(cfg)),
        ("shared", shared_gain(1.0)),
    ):
        results[name] = {s: evaluate_method(design, method, scheme=s) for s in ("lodo", "cv")}
        for cells in results[name].values():
            assert {c.dataset for c in cells} == {"gsm8k", "mmlu"}
            assert all(c.value > 0.6 for c in cells)  # random ranking: 0.5
    table = transfer_table(results, "lodo")
    assert "| per arm |" in table and "gsm8k: gain (apgr)" in table
