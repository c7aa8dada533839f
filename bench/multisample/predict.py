"""Out-of-fold success-rate predictions for a multi-sample suite, from the prompt alone.

Features are the shipped predictor's frozen MiniLM embeddings (its int8 ONNX encoder, run by
:mod:`predictor_onnx.embed`, cached on disk). The head is a logistic regression trained on smooth
labels: each prompt's empirical success rate over its recorded samples (a prompt with rate r is
one positive row of weight r and one negative row of weight 1 − r). Predictions come from grouped
5-fold cross-validation, so no prompt is predicted by a head that saw it; the head's
regularisation strength is chosen by an inner cross-validation on the training folds only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["C_GRID", "OofPredictions", "embed_prompts", "fold_ids", "oof_success_rate"]

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
_EPS = 1e-6


@dataclass(frozen=True)
class OofPredictions:
    """Per-prompt out-of-fold predicted success rate, the fold of each prompt, chosen C per fold."""

    p_hat: np.ndarray
    fold: np.ndarray
    chosen_c: tuple[float, ...]


def embed_prompts(
    conversations: Sequence[Sequence[Any]],
    *,
    model_dir: Path | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Frozen embeddings ``(n, 384)`` of conversations by the shipped predictor's encoder."""
    from predictor_onnx.embed import OnnxEncoder, embed_messages
    from predictor_onnx.evaluate import default_model_dir
    from predictor_onnx.manifest import read_manifest

    manifest = read_manifest(model_dir or default_model_dir())
    encoder = OnnxEncoder(
        manifest.path(manifest.encoder),
        manifest.path(manifest.tokenizer),
        max_tokens=manifest.max_tokens,
        threads=2,
    )
    vectors: np.ndarray = embed_messages(
        encoder, conversations, cache_dir=cache_dir, progress=progress
    )
    return vectors


def fold_ids(groups: Sequence[str], n_folds: int, seed: int) -> np.ndarray:
    """A fold per item; items of one group share a fold (groups shuffled with ``seed``)."""
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[j]: rank % n_folds for rank, j in enumerate(order)}
    return np.asarray([fold_of[g] for g in groups])


def _fit_predict(x_train: np.ndarray, rate: np.ndarray, x_test: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    xs = scaler.transform(x_train)
    n = len(rate)
    features = np.vstack([xs, xs])
    labels = np.r_[np.ones(n), np.zeros(n)]
    weights = np.r_[rate, 1.0 - rate] + _EPS
    head = LogisticRegression(C=c, max_iter=2000)
    head.fit(features, labels, sample_weight=weights)
    return head.predict_proba(scaler.transform(x_test))[:, 1]


def _smooth_log_loss(rate: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(rate * np.log(p) + (1 - rate) * np.log(1 - p)))


def _choose_c(x: np.ndarray, rate: np.ndarray, seed: int) -> float:
    inner = fold_ids([str(i) for i in range(len(rate))], 3, seed)
    losses = []
    for c in C_GRID:
        pred = np.empty(len(rate))
        for f in range(3):
            test = inner == f
            pred[test] = _fit_predict(x[~test], rate[~test], x[test], c)
        losses.append(_smooth_log_loss(rate, pred))
    return C_GRID[int(np.argmin(losses))]


def oof_success_rate(
    embeddings: np.ndarray,
    success_rate: np.ndarray,
    groups: Sequence[str],
    *,
    n_folds: int = 5,
    seed: int = 0,
) -> OofPredictions:
    """Out-of-fold predicted success rate of one sample, per prompt (grouped ``n_folds``-fold)."""
    from threadpoolctl import threadpool_limits

    folds = fold_ids(groups, n_folds, seed)
    p_hat = np.empty(len(success_rate))
    chosen = []
    # Many small fits: one BLAS thread each is several times faster than a contended pool.
    with threadpool_limits(limits=1):
        for f in range(n_folds):
            test = folds == f
            c = _choose_c(embeddings[~test], success_rate[~test], seed + 1 + f)
            chosen.append(c)
            p_hat[test] = _fit_predict(embeddings[~test], success_rate[~test], embeddings[test], c)
    return OofPredictions(p_hat, folds, tuple(chosen))
