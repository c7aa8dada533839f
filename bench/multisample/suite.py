"""One multi-sample suite measured the paper's way: its result document.

Load the recorded samples, score every sample with the suite's verifier (the Game of 24 checker,
or HumanEval's recorded execution — an oracle verifier), predict each prompt's success rate out
of fold, choose the stop rule's round size on training folds, compute every method's per-prompt
expected samples and quality, and the savings versus uniform best-of-k with bootstrap intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.multisample import methods as mm
from bench.multisample.expected import VerifierCounts
from bench.multisample.measure import HEADLINE_KS, samples_to_reach, savings_table
from bench.multisample.predict import embed_prompts, oof_success_rate
from proxy.policies.stopping import VerifierStop
from recorded_data.multisample import MultiSampleSuite, load_multisample
from replay.game24 import check_answer
from replay.multisample import GAME24_VERIFIER, ORACLE_VERIFIER

__all__ = ["UNIFORM_KS", "SuiteRun", "evaluate_multisample_suite", "verifier_verdicts"]

UNIFORM_KS = (1, 2, 4, 8, 16)
CURVE_KS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 50)
LAMBDAS = (0.0, *(float(x) for x in np.geomspace(1e-4, 0.5, 30)))
SEQ_CAPS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 50)
STEP_CANDIDATES: tuple[mm.Step, ...] = ("double", 4, 2, 1)  # fewer rounds first: wins ties
# A binary verifier scores 0 or 1: every accept_score in (0, 1] takes the same decisions.
ACCEPT_SCORE = 0.5
QUICK_PROMPTS = 40
N_FOLDS = 5


@dataclass(frozen=True)
class SuiteRun:
    """A suite's result document and what the live check needs: the prompts, their exact
    tables, their out-of-fold predictions, and each prompt's round size and whether its prior
    sizes round one (both chosen on its fold's training prompts)."""

    doc: dict[str, Any]
    suite: MultiSampleSuite
    tables: mm.PromptTables
    p_hat: np.ndarray
    steps: list[mm.Step]
    prior_first: list[bool]


def verifier_verdicts(suite: MultiSampleSuite) -> tuple[np.ndarray, str]:
    """Per-sample acceptance by the suite's verifier, and the verifier's name."""
    if suite.spec.verifier == "game24":
        accepted = [[check_answer(t, p.numbers or ()) for t in p.texts] for p in suite.prompts]
        return np.asarray(accepted, bool), GAME24_VERIFIER
    return suite.correct.copy(), ORACLE_VERIFIER


def _choose_steps(
    tables: mm.PromptTables, train: np.ndarray, target_k: int
) -> tuple[mm.Step, float | None]:
    """The round size whose sequential curve reaches uniform best-of-``target_k`` with the
    fewest samples on the training prompts (ties to fewer rounds)."""
    sub = mm.PromptTables(tables.quality[train], tables.miss[train])
    target = float(sub.quality[:, target_k].mean())
    best: tuple[mm.Step, float | None] = (STEP_CANDIDATES[0], None)
    for step in STEP_CANDIDATES:
        pts = mm.sequential(sub, [step] * sub.n_prompts, SEQ_CAPS)
        need = samples_to_reach(pts.samples.mean(0), pts.quality.mean(0), target)
        if need is not None and (best[1] is None or need < best[1] - 1e-9):
            best = (step, need)
    return best


def _choose_first_round(
    tables: mm.PromptTables,
    embeddings: np.ndarray,
    rate: np.ndarray,
    ids: Sequence[str],
    train: np.ndarray,
    step: mm.Step,
    seed: int,
) -> bool:
    """Whether ``adaptive_sequential`` sizes round one by the prior (``first_round_n``) or uses
    the chosen round size: whichever reaches the training prompts' uniform best-of-8 quality
    with fewer samples, the prior judged by a nested out-of-fold predictor on those prompts."""
    rows = np.nonzero(train)[0]
    sub = mm.PromptTables(tables.quality[rows], tables.miss[rows])
    inner = oof_success_rate(
        embeddings[rows], rate[rows], [ids[int(i)] for i in rows], n_folds=N_FOLDS, seed=seed
    )
    target = float(sub.quality[:, 8].mean())
    need = []
    for prior in (False, True):
        pts = mm.adaptive_sequential(
            sub,
            inner.p_hat,
            [step] * len(rows),
            LAMBDAS[::3],
            SEQ_CAPS[::2],
            prior_first_round=[prior] * len(rows),
        )
        reached = samples_to_reach(pts.samples.mean(0), pts.quality.mean(0), target)
        need.append(float("inf") if reached is None else reached)
    return need[1] < need[0]


def _stop_rule_mc_check(
    accepted: np.ndarray,
    correct: np.ndarray,
    steps: Sequence[mm.Step],
    cap: int,
    draws: int,
    seed: int,
) -> dict[str, Any]:
    """Run the proxy's own ``VerifierStop`` on random draw orders (Monte Carlo) and compare with
    the exact expectation used for the curves."""
    rule = VerifierStop(ACCEPT_SCORE)
    rng = np.random.default_rng(seed)
    s_draws, q_draws = [], []
    for acc, cor, step in zip(accepted, correct, steps, strict=True):
        for _ in range(draws):
            order = rng.permutation(len(acc))
            drawn = mm.schedule(step if isinstance(step, int) else 1, step, cap)
            taken = drawn[-1]
            for size in drawn:
                scores = [float(acc[j]) for j in order[:size]]
                if rule.should_stop([None] * size, scores):
                    taken = size
                    break
            scores = [float(acc[j]) for j in order[:taken]]
            pick = rule.accepted_index(scores)
            s_draws.append(taken)
            q_draws.append(cor[order[pick if pick is not None else 0]])
    s, q = np.asarray(s_draws, float), np.asarray(q_draws, float)
    n = len(s)
    return {
        "cap": cap,
        "draws_per_prompt": draws,
        "mean_samples": float(s.mean()),
        "mean_samples_se": float(s.std(ddof=1) / np.sqrt(n)),
        "quality": float(q.mean()),
        "quality_se": float(q.std(ddof=1) / np.sqrt(n)),
    }


def evaluate_multisample_suite(
    data_dir: Path,
    name: str,
    *,
    quick: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
    embed_cache_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> SuiteRun:
    """One multi-sample suite measured (its document is ``bench/results/<suite>.json``)."""
    started = time.monotonic()
    suite = load_multisample(data_dir, name)
    if quick:
        keep = np.sort(np.random.default_rng(seed).permutation(len(suite.prompts))[:QUICK_PROMPTS])
        suite = suite.subset([int(i) for i in keep])
    accepted, verifier = verifier_verdicts(suite)
    correct = suite.correct
    counts = [VerifierCounts.from_samples(a, c) for a, c in zip(accepted, correct, strict=True)]
    tables = mm.PromptTables.from_counts(counts)
    log(
        f"  {name}: {len(counts)} prompts x {correct.shape[1]} samples; verifier {verifier}; "
        f"checker agrees with the recorded verdict on {float((accepted == correct).mean()):.4f}"
    )
    embeddings = embed_prompts(
        [p.messages for p in suite.prompts], cache_dir=embed_cache_dir, progress=progress
    )
    rate = correct.mean(1)
    oof = oof_success_rate(
        embeddings, rate, [p.prompt_id for p in suite.prompts], n_folds=N_FOLDS, seed=seed
    )
    p_hat = oof.p_hat
    step_per_fold = [_choose_steps(tables, oof.fold != f, 8)[0] for f in range(N_FOLDS)]
    steps = [step_per_fold[f] for f in oof.fold]
    ids = [p.prompt_id for p in suite.prompts]
    prior_per_fold = [
        _choose_first_round(
            tables, embeddings, rate, ids, oof.fold != f, step_per_fold[f], seed + 10 + f
        )
        for f in range(N_FOLDS)
    ]
    prior_first = [prior_per_fold[f] for f in oof.fold]
    log(
        f"  {name}: chosen on training folds: round size {step_per_fold}, prior-sized first "
        f"round {prior_per_fold}; computing curves …"
    )
    caps_2d = SEQ_CAPS
    splits = 4 if quick else 20
    methods = {
        "uniform": mm.uniform(tables, CURVE_KS),
        "adaptive": mm.adaptive(tables, p_hat, LAMBDAS),
        "sequential": mm.sequential(tables, steps, SEQ_CAPS),
        "adaptive_sequential": mm.adaptive_sequential(
            tables, p_hat, steps, LAMBDAS[::3], caps_2d, prior_first_round=prior_first
        ),
        "oracle": mm.oracle(accepted, correct, LAMBDAS, splits=splits, seed=seed),
    }
    extra = {
        "oracle_sequential": mm.oracle_sequential(
            accepted, correct, steps, LAMBDAS[::3], caps_2d, splits=max(2, splits // 4), seed=seed
        ),
    }
    uniform_q = tables.quality[:, list(HEADLINE_KS)]
    log(f"  {name}: bootstrap ({n_boot} resamples) …")
    table = savings_table(methods, uniform_q, HEADLINE_KS, n_boot=n_boot, seed=seed)
    extra_table = savings_table(extra, uniform_q, HEADLINE_KS, n_boot=n_boot, seed=seed)
    rows = np.arange(len(counts))
    greedy = {
        str(k): float(tables.quality[rows, mm.greedy_equal_budget(tables, p_hat, k)].mean())
        for k in HEADLINE_KS
    }
    mc = _stop_rule_mc_check(accepted, correct, steps, 8, 50 if quick else 200, seed)
    exact = mm.sequential(tables, steps, [8])
    mc["exact_mean_samples"] = float(exact.samples.mean())
    mc["exact_quality"] = float(exact.quality.mean())
    from scipy.stats import spearmanr

    doc = {
        "suite": name,
        "description": suite.spec.description,
        "verifier": verifier,
        "oracle_verifier": verifier == ORACLE_VERIFIER,
        "mode": "quick" if quick else "full",
        "n_prompts": len(counts),
        "n_samples_per_prompt": int(correct.shape[1]),
        "max_samples_per_prompt": mm.CAP,
        "single_sample_accuracy": float(rate.mean()),
        "uniform_quality": {str(k): float(tables.quality[:, k].mean()) for k in UNIFORM_KS},
        "methods": table,
        "extra_methods": extra_table,
        "method_notes": {
            "oracle": "split-sample oracle of prompt-only allocation: n per prompt chosen on half "
            f"of its samples, scored on the other half ({splits} random halvings, both "
            "ways); the limit of any prompt predictor",
            "oracle_sequential": "adaptive_sequential with a perfect prior (half A's success "
            "rate), scored on half B: the limit of prior + stop rule",
            "max_samples_per_prompt": f"{mm.CAP} for every method (half the recorded samples)",
            "operating_points": "uniform: k; adaptive/oracle: lambda; sequential: cap; "
            "adaptive_sequential: (lambda, cap) grid, read off its frontier",
        },
        "adaptive_greedy_equal_budget_quality": greedy,
        "predictor": {
            "features": "shipped predictor's frozen MiniLM embeddings (int8 ONNX encoder)",
            "head": "logistic regression on smooth labels (empirical success rate), C chosen by "
            "inner 3-fold CV on the training folds",
            "scheme": f"grouped {N_FOLDS}-fold out-of-fold",
            "chosen_c": list(oof.chosen_c),
            "pearson": float(np.corrcoef(p_hat, rate)[0, 1]),
            "spearman": float(spearmanr(p_hat, rate).statistic),
        },
        "stop_rule": {
            "rule": f"VerifierStop(accept_score={ACCEPT_SCORE})",
            "accept_score_note": "binary verifier: any accept_score in (0, 1] decides the same",
            "step_candidates": [str(s) for s in STEP_CANDIDATES],
            "step_per_fold": [str(s) for s in step_per_fold],
            "prior_sized_first_round_per_fold": prior_per_fold,
            "step_chosen_on": "training folds: fewest samples to reach the training prompts' "
            "uniform best-of-8 quality (first round likewise, with a nested "
            "out-of-fold prior)",
            "monte_carlo_check": mc,
        },
        "seconds": round(time.monotonic() - started, 1),
    }
    return SuiteRun(doc, suite, tables, p_hat, steps, prior_first)
