"""The docs' cascade blocks (:mod:`bench.docs.run`): what cascades save and against what, what
answers as evidence add, and the wall time they cost (``bench/results/cascade.json``,
``bench/results/evidence_latency.json``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.cascade.evidence_latency import format_table
from bench.cascade.table import README_POINT, readme_table
from bench.docs.format import claim, count, join, pct, pct_ci, pts, pts_span, span, times, usd

Results = Mapping[str, Mapping[str, Any]]

# The cascades the README's table shows, in its order (cascade.json has one more).
README_CASCADES = (
    "175B → 175B best-of-100, Mixtral check",
    "175B → 175B best-of-100, 6B check",
    "Mixtral → GPT-4, 6B check",
    "Mixtral → GPT-4, 175B check",
)
SYSTEM_WORDS = {
    "weak": "Mixtral",
    "strong": "GPT-4",
    "6b_finetuning": "one 6B sample",
    "175b_finetuning": "one 175B sample",
    "6b_verification": "6B best-of-100",
    "175b_verification": "175B best-of-100",
}
# From the checkout's root; bench.docs.run makes it relative to the file the block lands in.
CASCADES_ANCHOR = (
    "/docs/policies.md#cascades-look-at-the-cheap-answers-before-paying-for-the-expensive-one"
)
AGREEMENT = "agreement rule (escalate iff the cheap answers disagree)"


def _case(results: Results, label: str) -> Mapping[str, Any]:
    case: Mapping[str, Any] = next(c for c in results["cascade"]["cases"] if c["cascade"] == label)
    return case


def _row(rows: Any, policy: str) -> Mapping[str, Any]:
    row: Mapping[str, Any] = next(r for r in rows if r["policy"] == policy)
    return row


def _system(case: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    system: Mapping[str, Any] = next(s for s in case["frontier"]["systems"] if s["system"] == name)
    return system


def cascade_table(results: Results) -> str:
    """The caption and :func:`bench.cascade.table.readme_table`."""
    doc = results["cascade"]
    return "\n".join(
        [
            "What cascades save, offline on the recorded answers (`python -m bench.cascade`, "
            f"{doc['bootstrap']:,} bootstrap resamples; costs as in the benchmark; prompt prior "
            "and escalation model out of fold):",
            "",
            *readme_table(doc["cases"], README_CASCADES),
        ]
    )


def _marked(loses: list[float]) -> str:
    if not loses:
        return "no fixed point loses more"
    lo, hi = (f"{100 * x:.1f}" for x in (loses[0], loses[-1]))
    return f"the {count(len(loses))} that lose {lo if lo == hi else f'{lo}–{hi}'} pt are marked"


def cascade_notes(results: Results) -> str:
    """How to read the table, and the agreement rule's own operating point."""
    doc = results["cascade"]
    six = _case(results, "Mixtral → GPT-4, 6B check")
    agreement, learned = _row(six["points"], AGREEMENT), _row(six["points"], README_POINT)
    loses = sorted(
        -_row(_case(results, name)["points"], README_POINT)["delta_quality"]
        for name in README_CASCADES
        if not _row(_case(results, name)["points"], README_POINT)["equal_quality"]
    )
    return (
        "Columns 2–5: cost saved against the all-expensive stage at equal accuracy (the "
        "cheapest point of the policy's curve that matches the all-expensive accuracy; 95% "
        'bootstrap interval). "Disagreement, then prior" escalates disagreements first, ordered '
        "by the prompt predictor's gain.\nColumn 6 is a deployable operating point: one threshold "
        "per fold, chosen on that fold's training prompts.\nA saving counts as at equal accuracy "
        "only when the accuracy change's interval includes 0 and the point estimate loses at "
        f"most {100 * doc['equal_quality_tolerance']:.1f} pt (about one question in "
        f"{six['prompts']:,}; `bench/cascade/frontier.py`); {_marked(loses)}.\nFor Mixtral → GPT-4 "
        "with a 6B "
        "check, the deployable point at equal accuracy is "
        + claim(
            agreement["equal_quality"] and not learned["equal_quality"],
            "the agreement rule itself",
        )
        + f": {pct(agreement['cost_saved'])} {span(agreement['cost_saved_ci95'])} saved at "
        f"{pts(agreement['delta_quality'])} {pts_span(agreement['delta_quality_ci95'])}, with "
        "nothing to train."
    )


def cascade_frontier(results: Results) -> str:
    """What the no-prediction frontier is, and why every 175B cascade loses to it."""
    big = _case(results, "175B → 175B best-of-100, Mixtral check")
    six = _case(results, "Mixtral → GPT-4, 6B check")
    weak, best = _system(big, "weak"), _system(big, "175b_verification")
    sample, strong = _system(big, "175b_finetuning"), _system(six, "strong")
    mix = sorted(big["frontier"]["at_all_expensive_accuracy"]["mix"], key=lambda m: -m["weight"])
    lose = all(
        r["saved_vs_frontier"] < 0
        for c in results["cascade"]["cases"]
        if c["cascade"].startswith("175B")
        for r in (*c["curves"], *c["points"])
    )
    accuracy = [s["accuracy"] for s in six["frontier"]["systems"]]
    at = _row(six["points"], README_POINT)["frontier_accuracy"]
    check = _case(results, "Mixtral → GPT-4, 175B check")
    prompt = _row(big["curves"], "input-only route (prompt prior)")
    return (
        "The last column compares with what needs no prediction: the *no-prediction "
        f"frontier*, the cheapest random mix of single systems (each of the "
        f"{count(len(big['frontier']['systems']))} recorded GSM8K systems alone, checkers "
        "included: the lower convex hull of their mean cost and accuracy, recomputed on every "
        "bootstrap resample) that reaches the same accuracy; saved = 1 − cost ÷ the "
        "frontier's cost.\n"
        + claim(lose, "**Every 175B cascade loses to it.**")
        + "\n"
        + claim(
            weak["accuracy"] > best["accuracy"],
            "Mixtral alone is more accurate than 175B best-of-100",
        )
        + f" ({pct(weak['accuracy'])} against {pct(best['accuracy'])}) for "
        f"{pct(weak['cost_usd_per_request'] / best['cost_usd_per_request'], 3)} of its cost, so "
        "a mix of "
        + join([f"{pct(m['weight'], 0)} {SYSTEM_WORDS[m['system']]}" for m in mix])
        + " matches best-of-100 for "
        f"{usd(big['frontier']['at_all_expensive_accuracy']['cost_usd_per_request'])} a request, "
        f"while the cascade pays the 175B sample ({usd(sample['cost_usd_per_request'], 4)}) "
        "before it even escalates; its "
        f"{pct(_row(big['points'], README_POINT)['cost_saved'], 0)} against best-of-100 is a "
        "saving on an arm its checker beats.\nOn Mixtral → GPT-4, "
        + claim(strong["accuracy"] == max(accuracy), "GPT-4 is the most accurate single system")
        + ", so at its accuracy the frontier is GPT-4 alone and columns 2–5 are already "
        "savings against the frontier; the last column reads the frontier at the point's own "
        f"accuracy ({pct(at)} for the 6B check, "
        + claim(weak["accuracy"] < at < strong["accuracy"], "a Mixtral/GPT-4 mix")
        + ").\nA 175B check costs "
        f"{pct(sample['cost_usd_per_request'] / strong['cost_usd_per_request'], 0)} of GPT-4's "
        "cost per request, "
        + claim(
            all(r["saved_at_equal_quality"] < 0 for r in check["curves"][1:]),
            "more than it saves",
        )
        + f"; a prompt-only router saves {pct(prompt['saved_at_equal_quality'])} of "
        "best-of-100 on the 175B pair.\n`bench/results/cascade.json` has every figure (also the "
        "frontier of each cascade, the curves against it and the agreement rule as a fixed "
        "point), the agreement rates and the costs."
    )


def evidence(results: Results) -> str:
    """What answers as evidence add to routing (the routing section's closing sentence)."""
    six = _case(results, "Mixtral → GPT-4, 6B check")
    both = _row(six["curves"], "cascade: disagreement, then prior")
    prompt = _row(six["curves"], "input-only route (prompt prior)")
    agreement = _row(six["points"], AGREEMENT)
    big = _case(results, "175B → 175B best-of-100, Mixtral check")
    fixed = _row(big["points"], README_POINT)
    return (
        "Evidence adds less than it seems: on Mixtral → GPT-4 a 6B check saves "
        f"{pct_ci(both['saved_at_equal_quality'], both['saved_ci95'])} of GPT-4's cost at "
        "equal accuracy (disagreements first, then the prompt prior) against "
        f"{pct_ci(prompt['saved_at_equal_quality'], prompt['saved_ci95'])} for the prompt-only "
        "route, and the agreement rule as a fixed point "
        + claim(
            agreement["equal_quality"],
            f"{pct_ci(agreement['cost_saved'], agreement['cost_saved_ci95'])}",
        )
        + "; a cascade that checks GPT-3 175B against Mixtral saves "
        + claim(fixed["equal_quality"], f"{pct(fixed['cost_saved'], 0)} against best-of-100")
        + f" but costs {times(1.0 - fixed['saved_vs_frontier'])} the no-prediction frontier, "
        + claim(
            _system(big, "weak")["accuracy"] > _system(big, "175b_verification")["accuracy"],
            "since Mixtral alone beats best-of-100",
        )
        + f" (see [Cascades]({CASCADES_ANCHOR}))."
    )


def evidence_latency(results: Results) -> str:
    """:func:`bench.cascade.evidence_latency.format_table` of the committed run."""
    return format_table(results["evidence_latency"])
