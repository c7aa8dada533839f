"""Transfer evaluation over every dataset: leave-one-dataset-out (the headline) and in-dataset CV.

Each held-out dataset is scored by what a router can use on prompts it never saw:

* ``gsm8k``, ``mmlu``, ``mtbench``: APGR of the predicted ``gain`` (strong vs weak);
* ``alpaca_eval`` (chat prompts of another source, other models, judged wins): APGR of the
  predicted ``gain`` against the recorded gain of ladder pairs — the headline pair
  ``gpt4_1106_preview`` vs ``llama_2_70b_chat``, and the mean over every pair of the ladder whose
  stronger arm wins more often;
* ``humaneval``, ``game24`` (label = empirical success rate over 100 samples): c-index of the
  predicted ``p_strong`` (LODO: its own arm is never seen) or of its own arm's ``p`` (CV) against
  the success rate.

Methods are functions from training rows to a scorer, so the same splits score every candidate
(the shipped head, the floor, the old three-dataset predictor, and the experiments).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from predictor_onnx.evaluate import Design, fold_of
from predictor_onnx.metrics import routing_scores

#: The chat pair of the headline (a GPT-4-class model over a 70B open chat model).
CHAT_PAIR = ("gpt4_1106_preview", "llama_2_70b_chat")
SUCCESS_RATE_DATASETS = ("humaneval", "game24")
#: Datasets whose routing gain is strong vs weak (RouteLLM's).
ROUTELLM = ("gsm8k", "mmlu", "mtbench")

#: A trained scorer: rows of ``x`` -> (predicted gain, {arm: p}) for those rows.
Scorer = Callable[[Any], tuple[Any, dict[str, Any]]]
#: A method: (design, training row mask) -> scorer.
Method = Callable[[Design, Any], Scorer]


@dataclass(frozen=True)
class Cell:
    """One held-out figure: ``metric`` (``apgr`` / ``c-index``) on ``n`` prompts."""

    dataset: str
    target: str
    metric: str
    value: float
    n: int


def c_index(score: Any, label: Any) -> float:
    """Concordance: P(score ranks a pair as the label does), over pairs with different labels."""
    s = np.asarray(score, dtype=np.float64)
    y = np.asarray(label, dtype=np.float64)
    ds = np.sign(s[:, None] - s[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    pairs = dy > 0
    if not pairs.any():
        return float("nan")
    concordant = (ds[pairs] > 0).sum() + 0.5 * (ds[pairs] == 0).sum()
    return float(concordant / pairs.sum())


def ladder_pairs(design: Design, rows: Any) -> list[tuple[str, str]]:
    """(strong, weak) pairs of the arms observed on every row of ``rows``, by mean reward."""
    observed = [
        j for j in range(len(design.arms)) if rows.any() and design.mask[rows, j].mean() > 0.95
    ]
    means = {
        design.arms[j]: float(design.y[rows, j][design.mask[rows, j] > 0].mean()) for j in observed
    }
    names = sorted(means, key=lambda a: means[a])
    return [(hi, lo) for k, lo in enumerate(names) for hi in names[k + 1 :]]


def _apgr(design: Design, rows: Any, gain: Any, hi: str, lo: str) -> float:
    j_hi, j_lo = design.arms.index(hi), design.arms.index(lo)
    both = (design.mask[rows, j_hi] > 0) & (design.mask[rows, j_lo] > 0)
    r_hi = design.y[rows, j_hi][both]
    r_lo = design.y[rows, j_lo][both]
    return routing_scores(np.asarray(gain)[both], r_lo, r_hi).apgr


def _cells(
    design: Design, name: str, rows: Any, gain: Any, probs: dict[str, Any], scheme: str
) -> list[Cell]:
    n = int(rows.sum())
    if not probs:
        return []  # the method had no training data for this dataset (e.g. in-dataset CV)
    if name in ROUTELLM:
        return [Cell(name, "gain", "apgr", _apgr(design, rows, gain, "strong", "weak"), n)]
    if name in SUCCESS_RATE_DATASETS:
        arm = next(a for j, a in enumerate(design.arms) if design.mask[rows, j].all())
        source = arm if scheme == "cv" else "strong"
        score = probs.get(source)
        if score is None:
            return []
        label = design.y[rows, design.arms.index(arm)]
        return [Cell(name, f"p_{source} vs success rate", "c-index", c_index(score, label), n)]
    if name == "alpaca_eval":
        cells: list[Cell] = []
        pairs = ladder_pairs(design, rows)

        def pair_gain(hi: str, lo: str) -> Any:
            if scheme == "cv" and hi in probs and lo in probs:
                return np.asarray(probs[hi]) - np.asarray(probs[lo])
            return gain

        hi, lo = CHAT_PAIR
        cells.append(
            Cell(name, f"{hi} vs {lo}", "apgr", _apgr(design, rows, pair_gain(hi, lo), hi, lo), n)
        )
        values = [_apgr(design, rows, pair_gain(h, lw), h, lw) for h, lw in pairs]
        cells.append(
            Cell(name, f"mean of {len(pairs)} ladder pairs", "apgr", float(np.mean(values)), n)
        )
        return cells
    return []


def evaluate_method(
    design: Design,
    method: Method,
    *,
    scheme: str,
    n_folds: int = 5,
    seed: int = 0,
    datasets: Sequence[str] | None = None,
) -> list[Cell]:
    """Held-out cells of ``method`` on every dataset (``lodo``) or by grouped folds (``cv``).

    CV trains on the other folds of the same dataset only (in-dataset CV).
    """
    ds = np.asarray(design.datasets)
    cells: list[Cell] = []
    for name in datasets or sorted(set(design.datasets)):
        inside = ds == name
        if scheme == "lodo":
            scorer = method(design, ~inside)
            gain, probs = scorer(design.x[inside])
        else:
            idx = np.nonzero(inside)[0]
            folds = fold_of([design.groups[i] for i in idx], n_folds, seed)
            gain = np.zeros(len(idx))
            probs = {}
            for k in range(n_folds):
                test = np.zeros(len(ds), dtype=bool)
                test[idx[folds == k]] = True
                fold_gain, fold_probs = method(design, inside & ~test)(design.x[test])
                gain[folds == k] = fold_gain
                for arm, p in fold_probs.items():
                    probs.setdefault(arm, np.zeros(len(idx)))[folds == k] = p
        cells.extend(_cells(design, name, inside, gain, probs, scheme))
    return cells


def transfer_table(results: dict[str, dict[str, list[Cell]]], scheme: str) -> str:
    """Markdown: one row per method, one column per held-out cell of ``scheme``."""
    columns: list[tuple[str, str, str]] = []
    for by_scheme in results.values():
        for cell in by_scheme.get(scheme, []):
            key = (cell.dataset, cell.target, cell.metric)
            if key not in columns:
                columns.append(key)
    head = " | ".join(f"{d}: {t} ({m})" for d, t, m in columns)
    lines = [f"| method | {head} |", "|---|" + "---|" * len(columns)]
    for method, by_scheme in results.items():
        values = {(c.dataset, c.target, c.metric): c.value for c in by_scheme.get(scheme, [])}
        cells = " | ".join(f"{values[k]:.3f}" if k in values else "–" for k in columns)
        lines.append(f"| {method} | {cells} |")
    return "\n".join(lines)


TRANSFER_HEADER = (
    "Transfer over every dataset: APGR of the predicted gain (GSM8K, MMLU, MT-Bench: strong vs "
    "weak; AlpacaEval: ladder pairs), c-index against the empirical success rate (HumanEval, "
    "Game of 24); random 0.500. shipped = this folder's head recipe on all datasets; old "
    "predictor / floor = logistic L2 1e-3 / 1e-2 on the RouteLLM datasets only."
)
