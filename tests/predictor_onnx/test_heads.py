"""Head training on synthetic data, and the hand-written ONNX graph's parity with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from predictor_onnx.heads import HeadConfig, head_to_onnx, onnx_parity, train_head


def _data(n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 10)).astype(np.float32)
    y = np.stack([(x[:, 0] > 0), (x[:, 0] + x[:, 1] > 0)], axis=1).astype(np.float32)
    mask = np.ones_like(y)
    mask[: n // 2, 1] = 0.0  # the second arm is observed on half the rows only
    return x, y, mask


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_heads_learn_a_separable_signal(kind: str) -> None:
    x, y, mask = _data()
    cfg = HeadConfig(kind=kind, hidden=16, epochs=30, n_members=2, lr=1e-2)  # type: ignore[arg-type]
    head = train_head(x, y, mask, ("a", "b"), n_embed=8, cfg=cfg)
    probs = head.predict(x)
    assert probs.shape == (len(x), 2)
    accuracy = ((probs > 0.5) == (y > 0.5)).mean(axis=0)
    assert accuracy[0] > 0.9
    assert accuracy[1] > 0.8


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_onnx_graph_matches_numpy(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    x, y, mask = _data(100)
    cfg = HeadConfig(kind=kind, hidden=8, epochs=2, n_members=2)  # type: ignore[arg-type]
    head = train_head(x, y, mask, ("a", "b"), n_embed=8, cfg=cfg)
    head_to_onnx(head, tmp_path / "head.onnx", n_embed=8)
    assert onnx_parity(head, tmp_path / "head.onnx", x, n_embed=8) < 1e-5


def test_graded_rewards_are_soft_labels() -> None:
    x = np.zeros((200, 3), dtype=np.float32)
    y = np.full((200, 1), 0.3, dtype=np.float32)
    head = train_head(
        x, y, np.ones_like(y), ("a",), n_embed=2, cfg=HeadConfig(kind="linear", l2=0.0)
    )
    assert head.predict(x[:1])[0, 0] == pytest.approx(0.3, abs=1e-3)
