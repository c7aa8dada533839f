"""Prequential scores: how a head does on labels it was not fitted on, and whether it beats another.

Scores are over observed cells (row × target with weight > 0): weighted log loss, and ROC AUC per
target (a label ≥ 0.5 counts as a success), averaged over targets by their rows. The comparison
is paired, row by row: the margin is the mean log-loss gain per unit of label weight, and ``z``
is the mean per-row gain over its standard error, so a candidate that wins by chance on a few
rows does not pass a rule that asks for ``z ≥ 2`` (about 2% of chance wins pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from predictor_onnx.metrics import auc
from proxy.learn.targets import Examples

Array = npt.NDArray[np.float64]


def _cell_loss(p: Array, y: Array) -> Array:
    q = np.clip(p, 1e-7, 1.0 - 1e-7)
    return np.asarray(-(y * np.log(q) + (1.0 - y) * np.log(1.0 - q)), dtype=np.float64)


@dataclass(frozen=True)
class Score:
    """One head's scores on the held-out rows."""

    log_loss: float
    auc: float
    rows: int

    def to_json(self) -> dict[str, Any]:
        """JSON-able, rounded (NaN as ``None``)."""
        return {
            "log_loss": _round(self.log_loss),
            "auc": _round(self.auc),
            "rows": self.rows,
        }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def score(probs: Array, examples: Examples) -> Score:
    """Weighted log loss and mean per-target AUC of ``probs`` ``(N, T)`` on ``examples``."""
    w = examples.weight
    total = float(w.sum())
    if total <= 0:
        return Score(float("nan"), float("nan"), len(examples))
    log_loss = float((w * _cell_loss(probs, examples.y)).sum() / total)
    aucs, counts = [], []
    for j in range(examples.y.shape[1]):
        rows = w[:, j] > 0
        value = auc(probs[rows, j], examples.y[rows, j] >= 0.5) if rows.any() else float("nan")
        if not math.isnan(value):
            aucs.append(value)
            counts.append(int(rows.sum()))
    mean_auc = float(np.average(aucs, weights=counts)) if aucs else float("nan")
    return Score(log_loss, mean_auc, len(examples))


@dataclass(frozen=True)
class Comparison:
    """A candidate against the current head on the same held-out rows."""

    candidate: Score
    current: Score
    #: Mean log-loss gain per unit of label weight (positive: the candidate is better).
    margin: float
    #: The paired gain's mean over its standard error (rows are the units).
    z: float

    def to_json(self) -> dict[str, Any]:
        """JSON-able."""
        return {
            "candidate": self.candidate.to_json(),
            "current": self.current.to_json(),
            "margin": _round(self.margin),
            "z": _round(self.z),
        }


def compare(current: Array, candidate: Array, examples: Examples) -> Comparison:
    """Paired comparison of two heads' probabilities on ``examples``."""
    w = examples.weight
    gain_rows = (w * (_cell_loss(current, examples.y) - _cell_loss(candidate, examples.y))).sum(
        axis=1
    )
    total = float(w.sum())
    margin = float(gain_rows.sum() / total) if total > 0 else float("nan")
    n = len(gain_rows)
    sd = float(gain_rows.std(ddof=1)) if n > 1 else 0.0
    if n < 2:
        z = float("nan")
    elif sd > 0:
        z = float(gain_rows.mean() / (sd / math.sqrt(n)))
    else:
        z = 0.0 if gain_rows.mean() == 0 else math.copysign(math.inf, gain_rows.mean())
    return Comparison(score(candidate, examples), score(current, examples), margin, z)


@dataclass(frozen=True)
class PromotionRule:
    """When a candidate beats the current head: a log-loss margin that is unlikely to be
    chance, and an AUC that does not drop."""

    min_margin: float = 0.0
    min_z: float = 2.0
    max_auc_drop: float = 0.01
    min_holdout: int = 40

    def passes(self, comparison: Comparison) -> tuple[bool, str]:
        """Whether ``comparison`` promotes, and why (or why not)."""
        if comparison.candidate.rows < self.min_holdout:
            return False, f"{comparison.candidate.rows} held-out rows < {self.min_holdout}"
        if not comparison.margin > self.min_margin:
            return False, f"log-loss margin {comparison.margin:.5f} ≤ {self.min_margin}"
        if not comparison.z >= self.min_z:
            return False, f"paired z {comparison.z:.2f} < {self.min_z}"
        cand, cur = comparison.candidate.auc, comparison.current.auc
        if not math.isnan(cur) and not math.isnan(cand) and cand < cur - self.max_auc_drop:
            return False, f"AUC {cand:.4f} < current {cur:.4f} − {self.max_auc_drop}"
        return True, f"log-loss margin {comparison.margin:.5f} (z {comparison.z:.2f})"
