"""Fixtures of the predictor tests: the committed model folder and its tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

MODEL_DIR = Path(__file__).resolve().parents[2] / "predictor_onnx" / "model"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The shipped model folder (committed; built by ``adaptive-proxy predictor train``)."""
    if not (MODEL_DIR / "manifest.json").is_file():
        pytest.fail(f"shipped model missing at {MODEL_DIR}")
    return MODEL_DIR


@pytest.fixture(scope="session")
def prompt_encoder(model_dir: Path):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    from predictor_onnx.text import PromptEncoder

    return PromptEncoder(Tokenizer.from_file(str(model_dir / "tokenizer.json")), max_tokens=64)
