"""STAND-IN predictor (``--predictor features``): out-of-fold logistic regression on cheap text
features. It is not the shipped ONNX predictor; it has the same out-of-fold interface so the
benchmark runs end to end without it, and it is a useful weak baseline next to it.

Honesty rules it follows: a prediction for a prompt comes from a model fitted without that
prompt's group (``cv``: 5 folds grouped by ``group_id``; ``lodo``: fitted on the other datasets
only). Features: :func:`predictor_onnx.features.prompt_features` plus hashed word unigrams and
bigrams of the conversation. Graded rewards (MT-Bench) are fitted as soft labels (each row twice,
weighted ``y`` and ``1 - y``).

``lodo`` and the GSM8K decoding-procedure arms: no other dataset records those arms, so there is
nothing to fit on; the stand-in then transfers the Mixtral/GPT-4 predictions (``p_6b_*`` and
``p_175b_finetuning`` take ``p_weak``, ``p_175b_verification`` takes ``p_strong``, so
``gain_6b``/``gain_175b`` rank prompts by the predicted Mixtral→GPT-4 gain).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

PROCEDURE_ARMS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
ALL_ARMS = ("weak", "strong", *PROCEDURE_ARMS)
_LODO_TRANSFER = {
    "6b_finetuning": "weak",
    "6b_verification": "strong",
    "175b_finetuning": "weak",
    "175b_verification": "strong",
}


def _texts(records: Sequence[Any]) -> list[str]:
    return ["\n".join(str(m.get("content", "")) for m in r.messages) for r in records]


def _features(records: Sequence[Any]) -> Any:
    from scipy import sparse
    from sklearn.feature_extraction.text import HashingVectorizer

    from predictor_onnx.features import prompt_features

    dense = np.asarray([prompt_features(list(r.messages)) for r in records], dtype=np.float64)
    dense = (dense - dense.mean(axis=0)) / (dense.std(axis=0) + 1e-9)
    words = HashingVectorizer(
        n_features=2**15, ngram_range=(1, 2), alternate_sign=False, norm="l2"
    ).transform(_texts(records))
    return sparse.hstack([sparse.csr_matrix(dense), words]).tocsr()


def _fit_predict(
    x_train: Any, y_train: npt.NDArray[np.float64], x_test: Any
) -> npt.NDArray[np.float64]:
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    if len(y_train) == 0:
        return np.full(x_test.shape[0], 0.5)
    mean = float(y_train.mean())
    if mean <= 0.0 or mean >= 1.0:
        return np.full(x_test.shape[0], mean)
    # Soft labels: each row once as a positive (weight y) and once as a negative (weight 1 - y).
    xx = sparse.vstack([x_train, x_train]).tocsr()
    yy = np.concatenate([np.ones(len(y_train)), np.zeros(len(y_train))])
    ww = np.concatenate([y_train, 1.0 - y_train])
    keep = ww > 0
    model = LogisticRegression(C=1.0, max_iter=300, solver="liblinear")
    model.fit(xx[keep], yy[keep], sample_weight=ww[keep])
    return np.asarray(model.predict_proba(x_test)[:, 1], dtype=np.float64)


def _fold_of_groups(groups: Sequence[str], n_folds: int, seed: int) -> npt.NDArray[np.int64]:
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold = {g: int(order[i]) % n_folds for i, g in enumerate(unique)}
    return np.asarray([fold[g] for g in groups], dtype=np.int64)


def out_of_fold_predictions(
    records: Sequence[Any],
    *,
    scheme: str = "cv",
    n_folds: int = 5,
    seed: int = 0,
    embed_cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Out-of-fold predictions ``{prompt_id: {p_<arm>..., gain, gain_6b, gain_175b}}``.

    ``scheme="cv"``: ``n_folds`` folds grouped by ``group_id`` over all records (datasets
    pooled); ``scheme="lodo"``: each dataset predicted by a model fitted on the others.
    ``embed_cache_dir`` is accepted for interface parity and unused.
    """
    del embed_cache_dir
    if scheme not in ("cv", "lodo"):
        raise ValueError(f"unknown scheme {scheme!r}")
    n = len(records)
    x = _features(records)
    datasets = np.asarray([r.dataset for r in records])
    if scheme == "cv":
        folds = _fold_of_groups([r.group_id for r in records], n_folds, seed)
    else:
        names = sorted(set(datasets.tolist()))
        folds = np.asarray([names.index(d) for d in datasets], dtype=np.int64)
    preds: dict[str, npt.NDArray[np.float64]] = {a: np.full(n, np.nan) for a in ALL_ARMS}
    fold_ids = sorted(set(folds.tolist()))
    for i, fold in enumerate(fold_ids):
        test = folds == fold
        for arm in ALL_ARMS:
            has = np.asarray([arm in r.rewards for r in records])
            train = ~test & has
            if scheme == "lodo" and arm in PROCEDURE_ARMS and not train.any():
                continue  # filled by transfer below
            y = np.asarray(
                [records[int(j)].rewards[arm] for j in np.flatnonzero(train)], np.float64
            )
            preds[arm][test] = _fit_predict(x[train], y, x[test])
        if progress:
            print(f"  stand-in predictor ({scheme}): fold {i + 1}/{len(fold_ids)}", flush=True)
    for arm, source in _LODO_TRANSFER.items():
        missing = np.isnan(preds[arm])
        preds[arm][missing] = preds[source][missing]
    out: dict[str, dict[str, float]] = {}
    for j, rec in enumerate(records):
        row = {f"p_{a}": float(preds[a][j]) for a in ALL_ARMS}
        row["gain"] = row["p_strong"] - row["p_weak"]
        row["gain_6b"] = row["p_6b_verification"] - row["p_6b_finetuning"]
        row["gain_175b"] = row["p_175b_verification"] - row["p_175b_finetuning"]
        out[rec.prompt_id] = row
    return out
