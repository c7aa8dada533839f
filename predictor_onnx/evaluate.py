"""Out-of-fold predictions and the metric tables of ``predictor eval``.

Schemes (no prompt is ever scored by a head that saw it):

* ``cv``: within each dataset, groups (a prompt; an MT-Bench question with both turns) are dealt
  into ``n_folds`` folds by a seeded shuffle. Fold k is scored by a head trained on the other folds
  of that dataset plus, when ``cv_pool="all"`` (default), every record of the other datasets.
* ``lodo``: each dataset is scored by a head trained on the other datasets only. Arms no training
  record observes (the GSM8K-only arms when GSM8K is held out) are left out of those predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from predictor_onnx.heads import HeadConfig, train_head
from predictor_onnx.metrics import auc, brier, ece, routing_scores
from predictor_onnx.schema import named_outputs

if TYPE_CHECKING:
    from recorded_data.records import Record

Scheme = Literal["cv", "lodo"]


@dataclass(frozen=True)
class Design:
    """Training matrices: inputs, soft labels, observation mask, and record keys."""

    x: Any
    y: Any
    mask: Any
    arms: tuple[str, ...]
    datasets: tuple[str, ...]
    groups: tuple[str, ...]
    prompt_ids: tuple[str, ...]
    n_embed: int


def build_design(
    records: Sequence[Record],
    embeddings: Any,
    features: Any,
    arms: Sequence[str],
) -> Design:
    """Stack ``[embedding | features]`` and the rewards of ``arms`` (NaN-free, masked)."""
    y = np.zeros((len(records), len(arms)), dtype=np.float32)
    mask = np.zeros_like(y)
    for i, rec in enumerate(records):
        for j, arm in enumerate(arms):
            if arm in rec.rewards:
                y[i, j] = float(rec.rewards[arm])
                mask[i, j] = 1.0
    x = np.concatenate([np.asarray(embeddings, np.float32), np.asarray(features, np.float32)], 1)
    return Design(
        x=x,
        y=y,
        mask=mask,
        arms=tuple(arms),
        datasets=tuple(r.dataset for r in records),
        groups=tuple(r.group_id for r in records),
        prompt_ids=tuple(r.prompt_id for r in records),
        n_embed=int(np.asarray(embeddings).shape[1]),
    )


def fold_of(groups: Sequence[str], n_folds: int, seed: int) -> Any:
    """Fold index per row: unique groups shuffled with ``seed`` and dealt round-robin."""
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold = {unique[k]: pos % n_folds for pos, k in enumerate(order)}
    return np.asarray([fold[g] for g in groups])


def _splits(
    design: Design, scheme: Scheme, n_folds: int, seed: int, cv_pool: str
) -> list[tuple[str, Any, Any]]:
    ds = np.asarray(design.datasets)
    splits: list[tuple[str, Any, Any]] = []
    for name in sorted(set(design.datasets)):
        inside = ds == name
        if scheme == "lodo":
            splits.append((f"{name} (held out)", ~inside, inside))
            continue
        idx = np.nonzero(inside)[0]
        folds = fold_of([design.groups[i] for i in idx], n_folds, seed)
        for k in range(n_folds):
            test = np.zeros(len(ds), dtype=bool)
            test[idx[folds == k]] = True
            train = (inside & ~test) | (~inside if cv_pool == "all" else np.zeros_like(inside))
            splits.append((f"{name} fold {k + 1}/{n_folds}", train, test))
    return splits


def oof_from_design(
    design: Design,
    *,
    scheme: Scheme,
    gains: dict[str, tuple[str, str]],
    cfg: HeadConfig,
    n_folds: int = 5,
    seed: int = 0,
    cv_pool: str = "all",
    sample_weight: Callable[[Design, Any], Any] | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Out-of-fold predictions keyed by prompt id, from a prepared :class:`Design`."""
    from tqdm import tqdm

    out: dict[str, dict[str, float]] = {}
    splits = _splits(design, scheme, n_folds, seed, cv_pool)
    for _label, train, test in tqdm(splits, desc=f"{scheme} folds", disable=not progress):
        seen = design.mask[train].sum(axis=0) > 0
        arms = tuple(a for a, s in zip(design.arms, seen, strict=True) if s)
        cols = np.nonzero(seen)[0]
        mask = design.mask[train][:, cols]
        if sample_weight is not None:
            mask = mask * sample_weight(design, train)[:, None]
        head = train_head(
            design.x[train], design.y[train][:, cols], mask, arms, n_embed=design.n_embed, cfg=cfg
        )
        rows = named_outputs(head.predict(design.x[test]), arms, gains)
        for i, row in zip(np.nonzero(test)[0], rows, strict=True):
            out[design.prompt_ids[i]] = row
    return out


def balanced_weights(design: Design, train: Any) -> Any:
    """Per-row weights giving each training dataset weight ∝ sqrt(its size)."""
    ds = np.asarray(design.datasets)[train]
    weights = np.ones(len(ds), dtype=np.float32)
    names, counts = np.unique(ds, return_counts=True)
    for name, count in zip(names, counts, strict=True):
        weights[ds == name] = np.sqrt(counts.max() / count)
    return weights / weights.mean()


def metric_rows(
    records: Sequence[Record],
    predictions: dict[str, dict[str, float]],
    arms: Sequence[str],
    gains: dict[str, tuple[str, str]],
) -> list[dict[str, Any]]:
    """Per dataset and gain: routing scores (model, oracle), AUC; Brier/ECE of every arm.

    A gain is scored on a dataset when its two arms are observed there and predicted.
    """
    rows: list[dict[str, Any]] = []
    for name in sorted({r.dataset for r in records}):
        recs = [r for r in records if r.dataset == name and r.prompt_id in predictions]
        preds = [predictions[r.prompt_id] for r in recs]
        calibration: dict[str, float] = {}
        for arm in arms:
            have = [
                (p[f"p_{arm}"], r.rewards[arm])
                for p, r in zip(preds, recs, strict=True)
                if f"p_{arm}" in p and arm in r.rewards
            ]
            if have:
                prob, reward = np.asarray(have).T
                calibration[f"brier_{arm}"] = brier(prob, reward)
                calibration[f"ece_{arm}"] = ece(prob, reward)
        for gain_name, (hi, lo) in gains.items():
            pairs = [
                (p[gain_name], r.rewards[lo], r.rewards[hi])
                for p, r in zip(preds, recs, strict=True)
                if gain_name in p and hi in r.rewards and lo in r.rewards
            ]
            if not pairs:
                continue
            gain, r_lo, r_hi = np.asarray(pairs).T
            model = routing_scores(gain, r_lo, r_hi)
            oracle = routing_scores(r_hi - r_lo, r_lo, r_hi, split_ties=True)
            rows.append(
                {
                    "dataset": name,
                    "gain": gain_name,
                    "arms": (hi, lo),
                    "n": len(pairs),
                    "apgr": model.apgr,
                    "cpt50": model.cpt50,
                    "cpt80": model.cpt80,
                    "oracle_apgr": oracle.apgr,
                    "oracle_cpt50": oracle.cpt50,
                    "oracle_cpt80": oracle.cpt80,
                    "auc_gain": auc(gain, r_hi > r_lo),
                    **calibration,
                }
            )
    return rows


def format_table(rows: Sequence[dict[str, Any]], title: str) -> str:
    """Markdown table of :func:`metric_rows` (random: APGR 0.500, CPT(x) = x)."""
    lines = [
        f"**{title}**",
        "",
        "| dataset | gain | n | APGR | CPT(50%) | CPT(80%) | AUC gain "
        "| oracle APGR / CPT50 / CPT80 | Brier lo / hi | ECE lo / hi |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for r in rows:
        hi, lo = r["arms"]
        lines.append(
            f"| {r['dataset']} | {r['gain']} | {r['n']} | {r['apgr']:.3f} | {r['cpt50']:.1%} "
            f"| {r['cpt80']:.1%} "
            f"| {r['auc_gain']:.3f} | {r['oracle_apgr']:.3f} / {r['oracle_cpt50']:.1%} / "
            f"{r['oracle_cpt80']:.1%} | {r.get(f'brier_{lo}', nan):.3f} / "
            f"{r.get(f'brier_{hi}', nan):.3f} | {r.get(f'ece_{lo}', nan):.3f} / "
            f"{r.get(f'ece_{hi}', nan):.3f} |"
        )
    return "\n".join(lines)


def default_model_dir() -> Path:
    """The shipped model folder inside the package."""
    return Path(__file__).resolve().parent / "model"


def out_of_fold_predictions(
    records: Sequence[Record],
    *,
    scheme: Scheme,
    n_folds: int = 5,
    seed: int = 0,
    embed_cache_dir: Path | None = None,
    progress: bool = True,
    model_dir: Path | None = None,
) -> dict[str, dict[str, float]]:
    """prompt_id -> predictions (``p_<arm>``, gains) from heads that never saw that prompt.

    Embeddings come from the model folder's int8 ONNX encoder (default: the shipped one) and are
    cached on disk; the head configuration is the folder's (``head_config`` in its manifest).
    """
    from dataclasses import replace

    from predictor_onnx.embed import OnnxEncoder, embed_messages
    from predictor_onnx.features import feature_matrix
    from predictor_onnx.manifest import read_manifest

    manifest = read_manifest(model_dir or default_model_dir())
    cfg = replace(HeadConfig(), **manifest.raw.get("head_config", {}))
    encoder = OnnxEncoder(
        manifest.path(manifest.encoder),
        manifest.path(manifest.tokenizer),
        max_tokens=manifest.max_tokens,
        threads=2,
    )
    conversations = [r.messages for r in records]
    embeddings = embed_messages(
        encoder, conversations, cache_dir=embed_cache_dir, progress=progress
    )
    observed = [a for a in manifest.arms if any(a in r.rewards for r in records)]
    design = build_design(records, embeddings, feature_matrix(conversations), observed)
    return oof_from_design(
        design,
        scheme=scheme,
        gains=manifest.gains,
        cfg=cfg,
        n_folds=n_folds,
        seed=seed,
        cv_pool=cfg.cv_pool,
        sample_weight=balanced_weights if cfg.balance_datasets else None,
        progress=progress,
    )
