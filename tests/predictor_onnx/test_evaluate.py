"""Grouped folds and out-of-fold scoring: no prompt is scored by a head that saw it."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from predictor_onnx.evaluate import (
    build_design,
    fold_of,
    format_table,
    metric_rows,
    oof_from_design,
)
from predictor_onnx.heads import HeadConfig
from recorded_data.records import Record


def _record(dataset: str, i: int, group: str, weak: float, strong: float) -> Record:
    return Record(
        dataset=dataset,
        prompt_id=f"{dataset}/{i}",
        group_id=group,
        messages=({"role": "user", "content": f"q{i}"},),
        rewards=MappingProxyType({"weak": weak, "strong": strong}),
        responses=MappingProxyType({}),
        extra=MappingProxyType({}),
    )


def _records() -> list[Record]:
    rng = np.random.default_rng(1)
    out = []
    for name in ("a", "b"):
        for i in range(60):
            weak = float(rng.integers(0, 2))
            out.append(_record(name, i, f"{name}/g{i // 2}", weak, max(weak, float(i % 3 == 0))))
    return out


def test_groups_never_straddle_folds() -> None:
    groups = [f"g{i // 2}" for i in range(40)]
    folds = fold_of(groups, 5, seed=0)
    for g in set(groups):
        assert len({int(f) for f, gg in zip(folds, groups, strict=True) if gg == g}) == 1
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]


def test_every_prompt_gets_one_out_of_fold_prediction_and_a_table() -> None:
    records = _records()
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((len(records), 6)).astype(np.float32)
    design = build_design(records, emb, np.zeros((len(records), 2), np.float32), ("weak", "strong"))
    cfg = HeadConfig(kind="linear")
    gains = {"gain": ("strong", "weak")}
    for scheme in ("cv", "lodo"):
        preds = oof_from_design(
            design,
            scheme=scheme,
            gains=gains,
            cfg=cfg,  # type: ignore[arg-type]
            progress=False,
        )
        assert set(preds) == {r.prompt_id for r in records}
        rows = metric_rows(records, preds, ("weak", "strong"), gains)
        assert {r["dataset"] for r in rows} == {"a", "b"}
        assert all(r["oracle_apgr"] >= r["apgr"] for r in rows)
        assert "| a | gain |" in format_table(rows, scheme)
