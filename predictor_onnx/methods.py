"""Candidate predictors for the transfer evaluation (:mod:`predictor_onnx.transfer`).

* :func:`per_arm`: one logistic output per arm (the shipped head's kind); ``gain`` is
  ``p_strong − p_weak``. Independent outputs: data of other arms cannot move ``gain``.
* :func:`shared_gain`: one linear scorer of "how much a stronger arm gains here", fitted on every
  (strong, weak) pair of every training dataset (the whole AlpacaEval ladder included): the target
  of a prompt is the mean gain over its dataset's pairs, so the ladder's 105 pairs and GSM8K's 15
  all teach the same direction.
* ``centred=True`` (both): embeddings and targets are centred per training dataset first, so the
  scorer learns what varies *within* a dataset (what ranks prompts of an unseen one) rather than
  what tells datasets apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from predictor_onnx.evaluate import Design
from predictor_onnx.heads import HeadConfig, train_head
from predictor_onnx.transfer import ROUTELLM, Cell, Method, Scorer, evaluate_method, ladder_pairs


def _centred(design: Design, rows: Any) -> Any:
    x = design.x[rows].copy()
    ds = np.asarray(design.datasets)[rows]
    for name in set(ds.tolist()):
        sel = ds == name
        x[sel, : design.n_embed] -= x[sel, : design.n_embed].mean(axis=0)
    return x


def _nothing(x_test: Any) -> tuple[Any, dict[str, Any]]:
    """The scorer of a method with no training rows: no arms, a constant gain."""
    return np.zeros(len(x_test)), {}


def per_arm(
    cfg: HeadConfig, *, centred: bool = False, datasets: Sequence[str] | None = None
) -> Method:
    """Per-arm logistic heads trained on ``rows`` (only of ``datasets`` when given)."""

    def fit(design: Design, rows: Any) -> Scorer:
        if datasets is not None:
            rows = rows & np.isin(np.asarray(design.datasets), list(datasets))
        seen = design.mask[rows].sum(axis=0) > 0
        if not seen.any():
            return _nothing
        arms = tuple(a for a, s in zip(design.arms, seen, strict=True) if s)
        cols = np.nonzero(seen)[0]
        x = _centred(design, rows) if centred else design.x[rows]
        head = train_head(
            x,
            design.y[rows][:, cols],
            design.mask[rows][:, cols],
            arms,
            n_embed=design.n_embed,
            cfg=replace(cfg, balance_datasets=False),
        )

        def score(x_test: Any) -> tuple[Any, dict[str, Any]]:
            p = head.predict(x_test)
            probs = {a: p[:, k] for k, a in enumerate(arms)}
            if "strong" in probs and "weak" in probs:
                gain = probs["strong"] - probs["weak"]
            else:
                gain = np.zeros(len(x_test))
            return gain, probs

        return score

    return fit


def pair_targets(design: Design, rows: Any) -> tuple[Any, Any]:
    """Per row: mean (strong − weak) reward over its dataset's ladder pairs; rows with a pair."""
    ds = np.asarray(design.datasets)
    target = np.zeros(len(ds))
    has = np.zeros(len(ds), dtype=bool)
    for name in set(ds[rows].tolist()):
        sel = rows & (ds == name)
        pairs = ladder_pairs(design, sel)
        if not pairs:
            continue
        total = np.zeros(int(sel.sum()))
        for hi, lo in pairs:
            total += design.y[sel, design.arms.index(hi)] - design.y[sel, design.arms.index(lo)]
        target[sel] = total / len(pairs)
        has[sel] = True
    return target, has


def shared_gain(
    l2: float = 1.0, *, centred: bool = True, balance: bool = True, base: HeadConfig | None = None
) -> Method:
    """Ridge scorer of the pair-mean gain, pooled over datasets; per-arm heads for ``probs``."""
    arm_method = per_arm(base or HeadConfig(kind="linear", l2=1e-3, linear_features=(0,)))

    def fit(design: Design, rows: Any) -> Scorer:
        target, has = pair_targets(design, rows)
        use = rows & has
        ds = np.asarray(design.datasets)[use]
        x = _centred(design, use) if centred else design.x[use]
        t = target[use]
        cols = np.r_[np.arange(design.n_embed), design.n_embed]  # embedding + log length
        feats = x[:, cols].astype(np.float64)
        weights = np.ones(len(t))
        for name in set(ds.tolist()):
            sel = ds == name
            if centred:
                t[sel] -= t[sel].mean()
            if balance:
                weights[sel] = 1.0 / np.sqrt(sel.sum())
            # Each dataset's targets on one scale: a ladder's mean gain is smaller than 0/1 gains.
            spread = t[sel].std()
            if spread > 0:
                t[sel] /= spread
        mean = (feats * weights[:, None]).sum(0) / weights.sum()
        scale = np.where(feats.std(0) > 1e-6, feats.std(0), 1.0)
        scale[: design.n_embed] = 1.0
        z = (feats - mean) / scale
        a = (z * weights[:, None]).T @ z + l2 * np.eye(z.shape[1])
        beta = np.linalg.solve(a, (z * weights[:, None]).T @ t)
        arms_scorer = arm_method(design, rows)

        def score(x_test: Any) -> tuple[Any, dict[str, Any]]:
            s = ((x_test[:, cols] - mean) / scale) @ beta
            return s, arms_scorer(x_test)[1]

        return score

    return fit


def headline(
    design: Design, shipped: Method, *, progress: bool = True
) -> dict[str, dict[str, list[Cell]]]:
    """The shipped method beside the old three-dataset predictor and the floor, both schemes."""
    candidates: dict[str, Method] = {"shipped": shipped}
    if set(ROUTELLM) <= set(design.datasets):
        old = HeadConfig(kind="linear", l2=1e-3, linear_features=(0,))
        floor = HeadConfig(kind="linear", l2=1e-2, linear_features=(0,))
        candidates["old predictor"] = per_arm(old, datasets=ROUTELLM)
        candidates["floor"] = per_arm(floor, datasets=ROUTELLM)
    results: dict[str, dict[str, list[Cell]]] = {}
    for name, method in candidates.items():
        results[name] = {}
        for scheme in ("lodo", "cv"):
            if progress:
                print(f"transfer evaluation: {name}, {scheme}…", flush=True)
            results[name][scheme] = evaluate_method(design, method, scheme=scheme)
    return results
