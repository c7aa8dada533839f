"""Offline cascade analysis on recorded GSM8K answers: ``python -m bench.cascade``.

A cascade runs its cheap stages, reads their answers, and escalates only when the evidence says
so (``type: cascade`` in the proxy). Here every cascade is replayed on the recorded answers of
the six GSM8K systems and compared with the input-only route (the prompt predictor's gain, out of
fold) and with sending everything to the expensive stage. Costs follow :mod:`bench.routing.suites`
(``gsm8k-procedures``: the documented mean cost per arm; ``routellm-gsm8k``: API prices × tokens)
and a cascade pays for every cheap stage it ran plus the expensive stage when it escalated.

Headline figure: *cost saved at equal quality* — the fraction of the all-expensive cost saved at
the cheapest point of the policy's curve whose accuracy reaches the all-expensive accuracy
(points linearly interpolated, i.e. a randomised mix of two thresholds, as ``bench.routing.metrics``
does for CPT), with a 95% percentile bootstrap interval over prompts. The learned escalation
model is scored out of fold (5 grouped folds: no prompt is scored by a model that saw it) and the
prompt prior it reads is the benchmark's own out-of-fold prediction. ``fixed threshold`` rows
choose one threshold per fold on that fold's training prompts (nested out-of-fold gains, the
cheapest threshold matching the all-expensive accuracy there) and report what it gives on the
held-out fold: a deployable figure, not a curve summary.

Every policy is also compared with the *no-prediction frontier* (:mod:`bench.cascade.frontier`): the
cheapest random mixture of single systems — each of the six recorded GSM8K systems alone, so
every arm, every checker and the expensive stage, at the case's costs — that reaches the
policy's accuracy. Where a checker alone is more accurate than the expensive stage, the
cascade's saving against it is negative, and that is reported as it is. A fixed point's saving
against the all-expensive stage is "at equal quality" only under
:data:`bench.cascade.frontier.EQUAL_QUALITY_RULE`; otherwise its quality change stands beside it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.cascade.frontier import (
    EQUAL_QUALITY_RULE,
    EQUAL_QUALITY_TOLERANCE,
    at_equal_quality,
    frontier_quality,
    frontier_summary,
    saved_vs_frontier,
)
from bench.cascade.table import format_table
from bench.routing.matched_quality import GSM8K_SYSTEMS
from bench.routing.metrics import bootstrap_cis, cost_to_reach, threshold_sweep
from bench.routing.suites import SUITES, SuiteData, SuiteSpec, build_suite
from predictor_onnx.escalation import (
    CascadeExamples,
    CascadeSpec,
    cascade_examples,
    oof_gain,
    read_prior_jsonl,
)
from predictor_onnx.evaluate import fold_of

FloatArray = npt.NDArray[np.float64]
RESULTS = Path(__file__).resolve().parents[1] / "results"


@dataclass(frozen=True)
class CascadeCase:
    """One cascade of one suite, and the prompt-predictor output that is its prior."""

    suite: str
    label: str
    spec: CascadeSpec
    prior_output: str


CASES: tuple[CascadeCase, ...] = (
    CascadeCase(
        "gsm8k-procedures",
        "175B → 175B best-of-100, 6B check",
        CascadeSpec("p175-6b", ("175b_finetuning", "6b_finetuning"), "175b_verification", ""),
        "gain_175b",
    ),
    CascadeCase(
        "gsm8k-procedures",
        "175B → 175B best-of-100, Mixtral check",
        CascadeSpec("p175-mixtral", ("175b_finetuning", "weak"), "175b_verification", ""),
        "gain_175b",
    ),
    CascadeCase(
        "routellm-gsm8k",
        "Mixtral → GPT-4, 6B check",
        CascadeSpec("mx-6b", ("weak", "6b_finetuning"), "strong", ""),
        "gain",
    ),
    CascadeCase(
        "routellm-gsm8k",
        "Mixtral → GPT-4, 175B check",
        CascadeSpec("mx-175b", ("weak", "175b_finetuning"), "strong", ""),
        "gain",
    ),
    CascadeCase(
        "routellm-gsm8k",
        "Mixtral → GPT-4, 6B + 175B checks",
        CascadeSpec("mx-6b-175b", ("weak", "6b_finetuning", "175b_finetuning"), "strong", ""),
        "gain",
    ),
)


@dataclass(frozen=True)
class Arrays:
    """Per-prompt outcomes and costs of one case, aligned with its examples."""

    cheap_reward: FloatArray  # the answer a non-escalating cascade returns
    first_reward: FloatArray  # the first stage alone (what an input-only route's cheap arm gives)
    expensive_reward: FloatArray
    stages_cost: FloatArray  # every cheap stage
    first_cost: FloatArray
    expensive_cost: FloatArray
    systems: tuple[str, ...]  # the frontier's single systems
    systems_reward: FloatArray  # prompts × systems
    systems_cost: FloatArray

    def frontier_points(self, idx: npt.NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
        """Mean accuracy and mean cost of each single system on the prompts ``idx``."""
        return self.systems_reward[idx].mean(axis=0), self.systems_cost[idx].mean(axis=0)


def frontier_systems(case: CascadeCase) -> tuple[str, ...]:
    """The single systems of the frontier: every recorded GSM8K system (the arms of both suites,
    so each checker and each stage alone), priced under the case's suite."""
    return tuple(dict.fromkeys((*GSM8K_SYSTEMS, *case.spec.stages, case.spec.expensive)))


def _arrays(case: CascadeCase, data: SuiteData, examples: CascadeExamples) -> Arrays:
    row = {pid: i for i, pid in enumerate(data.prompt_ids)}
    rows = np.asarray([row[pid] for pid in examples.prompt_ids])
    col = data.col
    spec = case.spec
    systems = frontier_systems(case)
    cols = np.asarray([col(k) for k in systems])
    return Arrays(
        cheap_reward=examples.cheap_reward,
        first_reward=data.reward[rows, col(spec.stages[0])],
        expensive_reward=data.reward[rows, col(spec.expensive)],
        stages_cost=sum((data.cost_usd[rows, col(s)] for s in spec.stages), np.zeros(len(rows))),
        first_cost=data.cost_usd[rows, col(spec.stages[0])],
        expensive_cost=data.cost_usd[rows, col(spec.expensive)],
        systems=systems,
        systems_reward=data.reward[np.ix_(rows, cols)],
        systems_cost=data.cost_usd[np.ix_(rows, cols)],
    )


def cost_at_equal_quality(
    scores: FloatArray, qc: FloatArray, qe: FloatArray, cc: FloatArray, ce: FloatArray
) -> float:
    """Mean cost per prompt at the cheapest point of the curve that reaches the all-expensive
    accuracy ``qe.mean()`` (``nan`` if it never does); ``cc``/``ce`` are the costs of a prompt
    not escalated / escalated."""
    sweep = threshold_sweep(scores, qc, qe, cc, ce)
    return cost_to_reach(sweep.cost_usd, sweep.quality, float(qe.mean())) / max(len(scores), 1)


def saved_at_equal_quality(
    scores: FloatArray,
    qc: FloatArray,
    qe: FloatArray,
    cc: FloatArray,
    ce: FloatArray,
    reference: FloatArray,
) -> float:
    """Fraction of the all-expensive cost (``reference``) saved where the curve reaches its
    accuracy; ``cc``/``ce`` are the costs of a prompt not escalated / escalated."""
    return 1.0 - cost_at_equal_quality(scores, qc, qe, cc, ce) / float(reference.mean())


def _curve_row(
    name: str, scores: FloatArray, arrays: tuple[FloatArray, ...], a: Arrays, n_boot: int
) -> dict[str, Any]:
    """``arrays``: accuracy not escalated / escalated, cost not escalated / escalated, and the
    all-expensive cost, per prompt."""
    qc, qe, cc, ce, reference = arrays

    def stats(idx: npt.NDArray[np.int64]) -> dict[str, float]:
        cost = cost_at_equal_quality(scores[idx], qc[idx], qe[idx], cc[idx], ce[idx])
        quality, systems_cost = a.frontier_points(idx)
        return {
            "saved": 1.0 - cost / float(reference[idx].mean()),
            "vs_frontier": saved_vs_frontier(float(qe[idx].mean()), cost, quality, systems_cost),
            "cost": cost,
        }

    point = stats(np.arange(len(scores)))
    ci = bootstrap_cis(stats, len(scores), n_boot=n_boot, seed=0)
    nan2 = (float("nan"), float("nan"))
    return {
        "policy": name,
        "saved_at_equal_quality": point["saved"],
        "saved_ci95": ci.get("saved", nan2),
        "cost_usd_per_request": point["cost"],
        "saved_vs_frontier": point["vs_frontier"],
        "saved_vs_frontier_ci95": ci.get("vs_frontier", nan2),
    }


def _point_row(
    name: str, escalate: npt.NDArray[np.bool_], a: Arrays, n_boot: int
) -> dict[str, Any]:
    quality = np.where(escalate, a.expensive_reward, a.cheap_reward)
    cost = a.stages_cost + np.where(escalate, a.expensive_cost, 0.0)

    def stats(idx: npt.NDArray[np.int64]) -> dict[str, float]:
        systems_quality, systems_cost = a.frontier_points(idx)
        q, c = float(quality[idx].mean()), float(cost[idx].mean())
        return {
            "saved": 1.0 - c / float(a.expensive_cost[idx].mean()),
            "delta_quality": q - float(a.expensive_reward[idx].mean()),
            "vs_frontier": saved_vs_frontier(q, c, systems_quality, systems_cost),
        }

    point = stats(np.arange(len(quality)))
    ci = bootstrap_cis(stats, len(quality), n_boot=n_boot, seed=0)
    accuracy = float(quality.mean())
    return {
        "policy": name,
        "escalated": float(escalate.mean()),
        "accuracy": accuracy,
        "cost_usd_per_request": float(cost.mean()),
        "delta_quality": point["delta_quality"],
        "delta_quality_ci95": ci["delta_quality"],
        "equal_quality": at_equal_quality(point["delta_quality"], ci["delta_quality"]),
        "cost_saved": point["saved"],
        "cost_saved_ci95": ci["saved"],
        "frontier_accuracy": frontier_quality(
            a.frontier_points(np.arange(len(quality)))[0], accuracy
        ),
        "saved_vs_frontier": point["vs_frontier"],
        "saved_vs_frontier_ci95": ci["vs_frontier"],
    }


def _cheapest_threshold(gain: FloatArray, a: Arrays, rows: npt.NDArray[np.bool_]) -> float:
    """The largest threshold whose cascade matches the all-expensive accuracy on ``rows``."""
    sweep = threshold_sweep(
        gain[rows],
        a.cheap_reward[rows],
        a.expensive_reward[rows],
        a.stages_cost[rows],
        a.stages_cost[rows] + a.expensive_cost[rows],
    )
    ok = np.flatnonzero(sweep.quality >= a.expensive_reward[rows].mean() - 1e-12)
    return float(sweep.thresholds[ok[0]]) if len(ok) else float("-inf")


def _fixed_threshold_escalations(
    examples: CascadeExamples, a: Arrays, n_folds: int
) -> npt.NDArray[np.bool_]:
    """Escalation decisions with one threshold per outer fold, chosen on its training folds."""
    folds = fold_of(examples.groups, n_folds, 0)
    outer = oof_gain(examples, n_folds=n_folds, seed=0)
    escalate = np.zeros(len(folds), dtype=bool)
    for k in range(n_folds):
        test = folds == k
        train = examples.subset(~test)
        inner = oof_gain(train, n_folds=n_folds, seed=1)
        inner_gain = np.full(len(folds), np.nan)
        inner_gain[~test] = inner
        threshold = _cheapest_threshold(inner_gain, a, ~test)
        escalate[test] = outer[test] >= threshold
    return escalate


def analyse_case(
    case: CascadeCase,
    data: SuiteData,
    records: Sequence[Any],
    prior: Mapping[str, Mapping[str, float]],
    *,
    n_boot: int,
    n_folds: int = 5,
) -> dict[str, Any]:
    """Every policy of one cascade case: curves and fixed points."""
    plain = cascade_examples(records, case.spec)
    with_prior = cascade_examples(
        records, case.spec, prior=prior, prior_outputs=(case.prior_output,)
    )
    if plain.prompt_ids != with_prior.prompt_ids:
        raise ValueError(f"{case.label}: prior predictions do not cover every prompt")
    a = _arrays(case, data, plain)
    prior_gain = with_prior.x[:, -1]
    disagree = (~plain.agree).astype(np.float64)
    # A cascade pays its cheap stages always, and the expensive stage on top when it escalates.
    cascade = (
        a.cheap_reward,
        a.expensive_reward,
        a.stages_cost,
        a.stages_cost + a.expensive_cost,
        a.expensive_cost,
    )
    curves: list[tuple[str, FloatArray, tuple[FloatArray, ...]]] = [
        (
            "input-only route (prompt prior)",
            prior_gain,
            (a.first_reward, a.expensive_reward, a.first_cost, a.expensive_cost, a.expensive_cost),
        ),
        ("cascade: agreement rule", disagree, cascade),
        ("cascade: disagreement, then prior", 2.0 * disagree + prior_gain, cascade),
        ("cascade: learned, evidence only", oof_gain(plain, n_folds=n_folds), cascade),
        ("cascade: learned, evidence + prior", oof_gain(with_prior, n_folds=n_folds), cascade),
    ]
    rows = [_curve_row(name, s, arrays, a, n_boot) for name, s, arrays in curves]
    points = [
        _point_row(
            "agreement rule (escalate iff the cheap answers disagree)", plain.agree == 0, a, n_boot
        ),
        _point_row(
            "learned + prior, fixed threshold from training folds",
            _fixed_threshold_escalations(with_prior, a, n_folds),
            a,
            n_boot,
        ),
    ]
    return {
        "suite": case.suite,
        "cascade": case.label,
        "stages": list(case.spec.stages),
        "expensive": case.spec.expensive,
        "prompts": len(a.cheap_reward),
        "accuracy": {
            "first_stage": float(a.first_reward.mean()),
            "cheap_answer": float(a.cheap_reward.mean()),
            "all_expensive": float(a.expensive_reward.mean()),
        },
        "cost_usd_per_request": {
            "cheap_stages": float(a.stages_cost.mean()),
            "expensive": float(a.expensive_cost.mean()),
        },
        "agreement_rate": float(plain.agree.mean()),
        "frontier": frontier_summary(
            a.systems,
            *a.frontier_points(np.arange(len(a.cheap_reward))),
            float(a.expensive_reward.mean()),
        ),
        "curves": rows,
        "points": points,
    }


def run(
    data_dir: Path, results_dir: Path, *, n_boot: int, cases: Sequence[CascadeCase] = CASES
) -> list[dict[str, Any]]:
    """Analyse every case; the prior comes from ``results_dir/<suite>.records.jsonl``."""
    from recorded_data.records import load_gsm8k

    records = load_gsm8k(data_dir)
    out = []
    for case in cases:
        base = SUITES[case.suite]
        systems = frontier_systems(case)
        spec = SuiteSpec(
            base.name,
            base.dataset,
            base.description,
            base.quality_name,
            ladder_arms=systems,
            cost_basis=base.cost_basis,
        )
        data = build_suite(spec, records)
        prior = read_prior_jsonl([results_dir / f"{case.suite}.records.jsonl"])
        out.append(analyse_case(case, data, records, prior, n_boot=n_boot))
    return out


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m bench.cascade") -> int:
    """``python -m bench.cascade``: print the tables, write ``bench/results/cascade.json``."""
    from recorded_data import resolve_data_dir

    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="recorded data (default: $ADAPTIVE_DATA_DIR, else the bundled copy)",
    )
    parser.add_argument(
        "--results",
        default=str(RESULTS),
        help="folder with the benchmark's *.records.jsonl (the prompt prior)",
    )
    parser.add_argument("--out", default=str(RESULTS / "cascade.json"), help="JSON written")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    results_dir = Path(args.results)
    data_dir = resolve_data_dir(args.data_dir)
    results = run(data_dir, results_dir, n_boot=args.bootstrap)
    print(format_table(results))
    path = Path(args.out)
    path.write_text(
        json.dumps(
            {
                "bootstrap": args.bootstrap,
                "equal_quality_tolerance": EQUAL_QUALITY_TOLERANCE,
                "equal_quality_rule": EQUAL_QUALITY_RULE,
                "cases": results,
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
