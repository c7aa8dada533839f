"""Sequential best-of-k with a prior learned from its own free labels, K-fold by prompt.

Issue 18 asks that, on the multi-sample suites, sequential best-of-k with the prior learned from
its own free labels save at least as much as without a prior. The suites have 100-164 prompts,
far below the learner's ``min_labels``, so one online pass would never refit; instead, per fold
of a grouped 5-fold split (the folds of :mod:`bench.multisample.suite`, seed 0):

1. **Deployment on the training folds.** Their prompts arrive in a seeded shuffled order; each
   runs sequential best-of-k on its recorded samples (a random draw order, rounds of the fold's
   round size, the proxy's :class:`~proxy.policies.stopping.VerifierStop`, up to
   :data:`STREAM_CAP` samples). Only the drawn samples are seen: the request's outcome record
   (the shipped prior's ``p_weak`` and the embedding, as the proxy logs them) gets the free label
   :func:`proxy.learn.labels.sequential_label` derives from its evidence (the verifier's accept
   share of the drawn samples).
2. **Refit.** The best-of-k head (:func:`proxy.learn.targets.best_of_k_spec`) is fitted as the
   learner fits it: rows by :func:`~proxy.learn.targets.build_examples`, ordered by label time,
   the newest ``holdout_fraction`` held out, ``l2`` by :func:`~proxy.learn.fit.choose_shared_l2`
   on the rest, :func:`~proxy.learn.fit.fit_offset` from the shipped prior as an offset, rounded
   as exported; scored on the held-out rows against the prior, with the promotion rule's verdict.
3. **Held-out fold.** Its prompts, never seen by that head, get the learned prior's p̂.

Then, over all prompts (each predicted by a head that never saw it), exact expected samples and
quality as :mod:`bench.multisample.methods` computes them: ``sequential`` (no prior: uniform
start), ``shipped_prior`` and ``free_prior`` (``adaptive_sequential`` with that p̂), and
``free_prior_if_promoted`` (the learned head only on folds where the production rule promotes
it, else the shipped prior: what a deployment would serve), read as samples saved at equal
quality versus uniform best-of-k (:func:`bench.multisample.measure.savings_table`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.multisample import methods as mm
from bench.multisample.expected import VerifierCounts
from bench.multisample.free_labels import STREAM_CAP, fit_like_learner, shipped_prior, stream_labels
from bench.multisample.measure import HEADLINE_KS, samples_to_reach, savings_table
from bench.multisample.predict import embed_prompts, fold_ids
from bench.multisample.suite import ACCEPT_SCORE, LAMBDAS, N_FOLDS, SEQ_CAPS, verifier_verdicts
from bench.online.choice import learner_for
from proxy.learn.learner import LearnerSettings
from recorded_data.multisample import load_multisample

__all__ = ["RESULT_NAME", "SUITES", "evaluate_free_prior", "main", "markdown_table"]


def _paired_difference(
    a: mm.MethodPoints, b: mm.MethodPoints, uniform_q: np.ndarray, n_boot: int, seed: int
) -> dict[str, Any]:
    """Saved(a) − saved(b) per headline k, with a paired percentile bootstrap over prompts."""
    rng = np.random.default_rng(seed)
    n = uniform_q.shape[0]
    boot = rng.integers(0, n, size=(n_boot, n))

    def saved(pts: mm.MethodPoints, rows: np.ndarray, target: float, k: int) -> float | None:
        need = samples_to_reach(pts.samples[rows].mean(0), pts.quality[rows].mean(0), target)
        return None if need is None else 1.0 - need / k

    out: dict[str, Any] = {}
    every = np.arange(n)
    for j, k in enumerate(HEADLINE_KS):
        target = float(uniform_q[:, j].mean())
        sa, sb = saved(a, every, target, k), saved(b, every, target, k)
        diffs = []
        for rows in boot:
            t = float(uniform_q[rows, j].mean())
            xa, xb = saved(a, rows, t, k), saved(b, rows, t, k)
            if xa is not None and xb is not None:
                diffs.append(xa - xb)
        ci = np.percentile(diffs, [2.5, 97.5]).tolist() if len(diffs) >= n_boot // 2 else None
        out[str(k)] = {
            "difference": None if sa is None or sb is None else sa - sb,
            "ci95": ci,
        }
    return out


def evaluate_free_prior(
    data_dir: Path,
    name: str,
    *,
    prompts: Sequence[int] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    settings: LearnerSettings | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One suite's document (``prompts``: a subset, for tests; ``settings``: the learner's,
    default those :func:`bench.online.choice.learner_for` gives the suite)."""
    started = time.monotonic()
    suite = load_multisample(data_dir, name)
    if prompts is not None:
        suite = suite.subset(list(prompts))
    accepted, verifier = verifier_verdicts(suite)
    correct = suite.correct
    counts = [VerifierCounts.from_samples(a, c) for a, c in zip(accepted, correct, strict=True)]
    tables = mm.PromptTables.from_counts(counts)
    embeddings = np.asarray(
        embed_prompts([p.messages for p in suite.prompts], progress=progress), np.float32
    )
    prior = shipped_prior(suite)
    ids = [p.prompt_id for p in suite.prompts]
    folds = fold_ids(ids, N_FOLDS, seed)
    chosen, choice = learner_for(name)
    if settings is None:
        settings = chosen
    else:
        choice = {"candidate": None, "chosen_on": None, "how": "given"}
    committed = _committed_stop_rule(name)
    step: mm.Step = committed["step"]
    prior_first = committed["prior_first"]
    learned = np.empty(len(ids))
    promoted_p = np.empty(len(ids))
    per_fold = []
    rng = np.random.default_rng(seed)
    for f in range(N_FOLDS):
        test = folds == f
        items, drawn = stream_labels(
            accepted, np.flatnonzero(~test).tolist(), embeddings, prior, step, rng
        )
        predict, verdict = fit_like_learner(items, settings)
        learned[test] = predict(prior[test], embeddings[test])
        promoted_p[test] = learned[test] if verdict["promoted"] else prior[test]
        per_fold.append({"fold": f, "labels": len(items), "samples_drawn": drawn, **verdict})
        log(f"  {name} fold {f}: {len(items)} free labels; {verdict.get('reason')}")
    steps = [step] * len(ids)
    firsts = [prior_first] * len(ids)
    lambdas = LAMBDAS[::3]
    methods = {
        "uniform": mm.uniform(tables, (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 50)),
        "sequential": mm.sequential(tables, steps, SEQ_CAPS),
        "shipped_prior": mm.adaptive_sequential(
            tables, prior, steps, lambdas, SEQ_CAPS, prior_first_round=firsts
        ),
        "free_prior": mm.adaptive_sequential(
            tables, learned, steps, lambdas, SEQ_CAPS, prior_first_round=firsts
        ),
        "free_prior_if_promoted": mm.adaptive_sequential(
            tables, promoted_p, steps, lambdas, SEQ_CAPS, prior_first_round=firsts
        ),
    }
    # Not the rule chosen on training folds: the prior also sizes round one (first_round_n).
    other = [not prior_first] * len(ids)
    extra = {
        f"{key}_first_round_{'by_prior' if not prior_first else 'one_step'}": (
            mm.adaptive_sequential(tables, p, steps, lambdas, SEQ_CAPS, prior_first_round=other)
        )
        for key, p in (("shipped_prior", prior), ("free_prior", learned))
    }
    uniform_q = tables.quality[:, list(HEADLINE_KS)]
    table = savings_table(methods, uniform_q, HEADLINE_KS, n_boot=n_boot, seed=seed)
    extra_table = savings_table(extra, uniform_q, HEADLINE_KS, n_boot=n_boot, seed=seed)
    rate = correct.mean(1)
    free_saved = table["free_prior"]["saved_at_equal_quality"]
    none_saved = table["sequential"]["saved_at_equal_quality"]
    # Equal up to float noise counts as equal (both read off the same exact tables).
    goal = all(
        none_saved[k] is None
        or (free_saved[k] is not None and free_saved[k] >= none_saved[k] - 1e-9)
        for k in none_saved
    )
    return {
        "suite": name,
        "verifier": verifier,
        "n_prompts": len(ids),
        "n_samples_per_prompt": int(correct.shape[1]),
        "goal": "sequential best-of-k with the prior learned from its own free labels saves at "
        "least as much as without a prior (issue 18, item 4)",
        "goal_met": goal,
        "methods": table,
        "extra_methods": extra_table,
        "extra_methods_note": "the other first-round choice than the one chosen on training "
        "folds, for reference only (chosen on no data: not a result)",
        "free_minus_none": _paired_difference(
            methods["free_prior"], methods["sequential"], uniform_q, n_boot, seed
        ),
        "free_minus_shipped": _paired_difference(
            methods["free_prior"], methods["shipped_prior"], uniform_q, n_boot, seed
        ),
        "folds": per_fold,
        "prior_correlation_with_success_rate": {
            "shipped": float(np.corrcoef(prior, rate)[0, 1]),
            "free_prior": float(np.corrcoef(learned, rate)[0, 1]),
        },
        "stop_rule": {
            "rule": f"VerifierStop(accept_score={ACCEPT_SCORE})",
            "round_size": str(step),
            "prior_sized_first_round": prior_first,
            "chosen_on": f"the training folds of bench/results/{name}.json (same folds, "
            "seed 0): stop_rule.step_per_fold, prior_sized_first_round_per_fold",
            "stream_cap": STREAM_CAP,
        },
        "learner": {
            "settings": {
                "holdout_fraction": settings.holdout_fraction,
                "l2_grid": list(settings.l2_grid),
                "promotion_rule": {
                    "min_z": settings.rule.min_z,
                    "min_holdout": settings.rule.min_holdout,
                    "max_auc_drop": settings.rule.max_auc_drop,
                },
            },
            "choice": choice,
            "note": "min_labels / refit_every are not used: one refit per fold on every free "
            "label of its training folds",
        },
        "seconds": round(time.monotonic() - started, 1),
    }


def _committed_stop_rule(name: str) -> dict[str, Any]:
    """The round size and first-round choice the suite's committed result chose on training
    folds; one value when every fold agrees (they do on the shipped results)."""
    from bench.online.prepare import RESULTS_DIR

    doc = json.loads((RESULTS_DIR / f"{name}.json").read_text(encoding="utf-8"))["stop_rule"]
    steps = set(doc["step_per_fold"])
    firsts = set(doc["prior_sized_first_round_per_fold"])
    if len(steps) != 1 or len(firsts) != 1:
        raise ValueError(f"{name}: the folds chose different stop rules: {steps}, {firsts}")
    raw = steps.pop()
    return {"step": "double" if raw == "double" else int(raw), "prior_first": bool(firsts.pop())}


SUITES = ("humaneval-codegen16b", "game24-gpt4-standard", "game24-gpt4-cot")
RESULT_NAME = "online-multisample.json"
COMMAND = "python -m bench.multisample.free_prior --out bench/results"


def markdown_table(docs: Sequence[dict[str, Any]]) -> str:
    """Samples saved at equal quality vs uniform best-of-k, per suite and prior."""
    rows = [
        "| suite | prior | saved k=2 | k=4 | k=8 | k=16 | goal met |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "sequential": "none (uniform start)",
        "shipped_prior": "shipped",
        "free_prior": "learned from free labels",
        "free_prior_if_promoted": "learned, only if promoted",
    }
    for doc in docs:
        for key, label in names.items():
            saved = doc["methods"][key]["saved_at_equal_quality"]
            cells = [
                "never" if saved[k] is None else f"{saved[k]:.1%}" for k in ("2", "4", "8", "16")
            ]
            goal = ("yes" if doc["goal_met"] else "no") if key == "free_prior" else ""
            rows.append(f"| {doc['suite']} | {label} | {' | '.join(cells)} | {goal} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.multisample.free_prior``: every multi-sample suite, one JSON."""
    import argparse

    from recorded_data import DataNotFoundError, resolve_data_dir

    parser = argparse.ArgumentParser(prog="python -m bench.multisample.free_prior")
    parser.add_argument("--suite", action="append", choices=SUITES, help="default: all three")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="folder for online-multisample.json")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        data_dir = resolve_data_dir(args.data_dir)
    except DataNotFoundError as exc:
        print(f"error: {exc}")
        return 2
    import tempfile

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="adaptive-free-prior-"))
    docs = []
    for name in args.suite or SUITES:
        print(f"suite {name} …")
        docs.append(
            evaluate_free_prior(
                data_dir, name, n_boot=args.bootstrap, seed=args.seed, progress=not args.no_progress
            )
        )
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULT_NAME
    result = {"command": COMMAND, "suites": {d["suite"]: d for d in docs}}
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(markdown_table(docs))
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
