"""The shipped ONNX predictor as the proxy uses it: load, predict, micro-batch, bad input, close."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from predictor_onnx.errors import PredictorLoadError
from predictor_onnx.runtime import OnnxPredictor
from predictor_onnx.schema import ALL_ARMS
from proxy.decide.prediction import Predictor

# Every arm of every dataset, then the gains policies read.
EXPECTED = {f"p_{arm}" for arm in ALL_ARMS} | {"gain", "gain_6b", "gain_175b", "gain_chat"}


@pytest.fixture
async def predictor(model_dir: Path) -> AsyncIterator[OnnxPredictor]:
    loaded = OnnxPredictor.load(model_dir, max_batch_size=8, batch_window_ms=20.0)
    yield loaded
    await loaded.aclose()


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def test_outputs_are_named_probabilities_with_derived_gains(
    predictor: OnnxPredictor,
) -> None:
    assert isinstance(predictor, Predictor)
    assert set(predictor.output_names) == EXPECTED
    [pred] = await predictor.predict([_user("What is 17 * 23? Show your steps.")])
    assert set(pred) == EXPECTED
    for name in EXPECTED:
        if name.startswith("p_"):
            assert 0.0 <= pred[name] <= 1.0
    assert pred["gain"] == pytest.approx(pred["p_strong"] - pred["p_weak"])
    assert pred["gain_6b"] == pytest.approx(pred["p_6b_verification"] - pred["p_6b_finetuning"])


async def test_load_without_a_path_uses_the_shipped_model() -> None:
    loaded = await OnnxPredictor.load_async()
    try:
        assert set(loaded.output_names) == EXPECTED
    finally:
        await loaded.aclose()


async def test_batch_order_and_determinism(predictor: OnnxPredictor) -> None:
    prompts = [_user("Translate 'cat' into French."), _user("Prove that sqrt(2) is irrational.")]
    both = await predictor.predict(prompts)
    alone = [(await predictor.predict([p]))[0] for p in prompts]
    assert both == alone
    again = [(await predictor.predict([p]))[0] for p in prompts]
    assert again == alone


async def test_bad_input_is_defined_not_an_error(predictor: OnnxPredictor) -> None:
    batch: list[Any] = [
        [],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        [{"role": "wizard", "content": "abracadabra"}],
        _user("word " * 100_000),
        [{"role": "user", "content": None}],
    ]
    preds = await predictor.predict(batch)
    assert len(preds) == len(batch)
    for pred in preds:
        assert set(pred) == EXPECTED
        assert all(v == v for v in pred.values())  # no NaN
    assert await predictor.predict([]) == []


async def test_concurrent_requests_share_batches(predictor: OnnxPredictor) -> None:
    prompts = [_user(f"Question number {i}: what is {i} + {i}?") for i in range(16)]
    results = await asyncio.gather(*(predictor.predict([p]) for p in prompts))
    assert len(results) == 16
    assert predictor.batches_run < 16
    sequential = [await predictor.predict([p]) for p in prompts[:2]]
    assert sequential[0][0] == results[0][0]


async def test_predict_after_close_raises(model_dir: Path) -> None:
    loaded = OnnxPredictor.load(model_dir)
    await loaded.aclose()
    with pytest.raises(RuntimeError):
        await loaded.predict([_user("hi")])


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


def test_missing_file_fails_at_load_naming_it_and_the_fix(model_dir: Path, tmp_path: Path) -> None:
    broken = _copy(model_dir, tmp_path)
    (broken / "head.onnx").unlink()
    with pytest.raises(PredictorLoadError, match=r"head\.onnx.*adaptive-proxy predictor train"):
        OnnxPredictor.load(broken)


def test_corrupt_file_fails_at_load(model_dir: Path, tmp_path: Path) -> None:
    broken = _copy(model_dir, tmp_path)
    with (broken / "encoder.int8.onnx").open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00garbage\x00")
    with pytest.raises(PredictorLoadError, match=r"corrupt.*encoder\.int8\.onnx"):
        OnnxPredictor.load(broken)


def test_missing_or_corrupt_manifest_fails_at_load(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PredictorLoadError, match="manifest missing"):
        OnnxPredictor.load(tmp_path)
    broken = _copy(model_dir, tmp_path)
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["arms"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PredictorLoadError, match="manifest corrupt"):
        OnnxPredictor.load(broken)


def test_manifest_names_small_files(model_dir: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    total = sum((model_dir / name).stat().st_size for name in manifest["files"])
    assert total <= 30 * 1024 * 1024
    assert (model_dir / "MODEL_CARD.md").is_file()


async def test_parallel_workers_give_the_single_worker_predictions(model_dir: Path) -> None:
    # Mixed lengths force several encoder calls, which workers=2 runs concurrently; each row
    # must still land at its own position.
    prompts = [_user("word " * n) for n in (300, 3, 120, 40, 7, 250, 60, 1)]
    one = OnnxPredictor.load(model_dir, workers=1)
    two = OnnxPredictor.load(model_dir, workers=2)
    try:
        sequential = await one.predict(prompts)
        parallel = await two.predict(prompts)
        alone = [(await one.predict([p]))[0] for p in prompts]
    finally:
        await one.aclose()
        await two.aclose()
    assert parallel == sequential == alone


def test_workers_must_be_positive(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        OnnxPredictor.load(model_dir, workers=0)


async def test_predict_embedded_returns_the_embedding_the_head_read(
    predictor: OnnxPredictor, model_dir: Path
) -> None:
    import numpy as np
    import onnxruntime as ort

    from predictor_onnx.features import feature_matrix

    prompts = [_user("What is 17 * 23? Show your steps."), _user("Name three French kings.")]
    pairs = await predictor.predict_embedded(prompts)
    assert [values for values, _ in pairs] == await predictor.predict(prompts)
    head = ort.InferenceSession(str(model_dir / "head.onnx"), providers=["CPUExecutionProvider"])
    for (values, embedding), prompt in zip(pairs, prompts, strict=True):
        assert embedding.shape == (predictor.manifest.embedding_dim,)
        assert float(np.linalg.norm(embedding)) == pytest.approx(1.0, abs=1e-3)
        probs = head.run(
            ["probs"], {"embedding": embedding[None, :], "features": feature_matrix([prompt])}
        )[0][0]
        assert values["p_strong"] == pytest.approx(
            float(probs[predictor.manifest.arms.index("strong")]), abs=1e-6
        )
