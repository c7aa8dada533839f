"""The docs' multi-sample blocks (:mod:`bench.docs.run`): the headline table, the honest summary
and the live operating points, from ``bench/results/<multi-sample suite>.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.docs.format import claim, count, join, num, pct, side
from bench.multisample.report import PAPER_CLAIM, live_points_table, saved_at_k_table
from bench.routing.report_text import GOAL_SUITE, MULTISAMPLE_GOAL
from recorded_data.multisample import MULTISAMPLE_SUITES

Results = Mapping[str, Mapping[str, Any]]

HEADLINE_K = "8"
SUITE_WORDS = {
    "humaneval-codegen16b": "HumanEval",
    "game24-gpt4-standard": "Game of 24 (standard prompt)",
    "game24-gpt4-cot": "Game of 24 (chain of thought)",
}
# The HumanEval points the README shows; REPORT.md has all of them.
LIVE_EXAMPLE = ("uniform-8", "sequential-c8", "sequential-c16", "adaptive_sequential-l0.02-c16")
SOURCES = tuple(f"{name}.json" for name in MULTISAMPLE_SUITES)
# Spearman below this: the prior ranks the suite's prompts barely at all.
NOISE_SPEARMAN = 0.2


def _docs(results: Results) -> dict[str, Mapping[str, Any]]:
    return {name: results[name] for name in MULTISAMPLE_SUITES}


def _saved(doc: Mapping[str, Any], method: str, k: str = HEADLINE_K) -> Any:
    methods = {**doc["methods"], **doc.get("extra_methods", {})}
    return methods[method]["saved_at_equal_quality"].get(k)


def _saved_ci(doc: Mapping[str, Any], method: str, k: str = HEADLINE_K) -> list[float]:
    methods = {**doc["methods"], **doc.get("extra_methods", {})}
    ci: list[float] = methods[method]["saved_at_equal_quality_ci95"][k]
    return ci


def headline(results: Results) -> str:
    """The caption and the table of samples saved versus uniform best-of-8."""
    docs = _docs(results)
    modes = join(sorted({str(d["mode"]) for d in docs.values()}))
    samples = join(sorted({str(d["n_samples_per_prompt"]) for d in docs.values()}))
    return "\n".join(
        [
            f"Samples saved at equal quality versus uniform best-of-{HEADLINE_K} ({modes} run, "
            f"{samples} recorded samples per prompt; negative = more samples than uniform "
            f"best-of-{HEADLINE_K} to reach its quality):",
            "",
            *saved_at_k_table(docs, HEADLINE_K),
        ]
    )


def _predictor_alone(docs: Mapping[str, Mapping[str, Any]]) -> str:
    items = []
    for name, doc in docs.items():
        value, ci = _saved(doc, "adaptive"), _saved_ci(doc, "adaptive")
        what = f"needs {pct(-value)} more samples" if value < 0 else f"saves {pct(value)}"
        items.append(f"on {SUITE_WORDS[name]} it {what} (interval {side(ci)})")
    return (
        "Allocating by the prompt predictor alone, to match uniform "
        f"best-of-{HEADLINE_K}: " + join(items) + "."
    )


def summary(results: Results) -> str:
    """The honest summary under the headline table."""
    docs = _docs(results)
    goal = docs[GOAL_SUITE]
    deployable = [_saved(goal, m) for m in ("adaptive", "sequential", "adaptive_sequential")]
    met = max(v for v in deployable if v is not None) >= MULTISAMPLE_GOAL
    game24 = [n for n in docs if n != GOAL_SUITE]
    spearman = {n: float(d["predictor"]["spearman"]) for n, d in docs.items()}
    oracle = {n: _saved(d, "oracle") for n, d in docs.items()}
    ceiling = [_saved(d, "oracle_sequential") for d in docs.values()]
    prior_short = (
        max(ceiling) >= MULTISAMPLE_GOAL > max(_saved(d, "adaptive") for d in docs.values())
    )
    sentences = [
        f"Honest summary: the goal of ≥ {pct(MULTISAMPLE_GOAL, 0)} samples saved at equal "
        f"quality versus uniform best-of-{HEADLINE_K} on HumanEval is "
        f"**{'met' if met else 'not met'}**.",
        f"Drawing until the verifier accepts saves {pct(_saved(goal, 'sequential'), 0)} there "
        f"({pct(_saved(goal, 'sequential', '16'), 0)} versus best-of-16) — and "
        + claim(
            bool(goal.get("oracle_verifier")),
            "HumanEval's verifier is its own tests, an oracle verifier, so that is an upper "
            "bound for a deployable one.",
        ),
        _predictor_alone(docs),
        f"From frozen MiniLM embeddings it ranks HumanEval prompts with Spearman "
        f"{num(spearman[GOAL_SUITE], 2)} against their success rate, and Game of 24 puzzles "
        + claim(
            all(spearman[n] < NOISE_SPEARMAN for n in game24),
            "barely at all",
        )
        + f" (Spearman {' / '.join(num(spearman[n], 2) for n in game24)}; its out-of-fold "
        "figures there move between reruns, so read Game of 24's adaptive column as noise), "
        "while a perfect prompt-only predictor (the split-sample oracle) would save "
        f"{pct(oracle[GOAL_SUITE], 0)} (HumanEval) and "
        f"{' / '.join(pct(oracle[n], 0) for n in game24)} (Game of 24), and a perfect prior "
        f"plus the stop rule {pct(min(ceiling), 0)[:-1]}–{pct(max(ceiling), 0)}.",
        claim(
            prior_short,
            f'The paper\'s "{PAPER_CLAIM}" is within reach of the allocation machinery; it '
            "is the prior that falls short.",
        ),
    ]
    return "\n".join(sentences)


def _points(docs: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [c for d in docs.values() for c in d.get("live", {}).get("checks", [])]


def live(results: Results) -> str:
    """The live operating points: what they show, one suite's table, the paired runs."""
    docs = _docs(results)
    points = _points(docs)
    mismatches = sum(c["n_mismatches"] or 0 for c in points if c["n_mismatches"] is not None)
    within = sum(bool(c["within_2se"] and c.get("samples_within_2se", True)) for c in points)
    decided = (
        "take exactly the offline decisions (0 mismatches)"
        if mismatches == 0
        else f"differ from the offline decisions in {mismatches} requests"
    )
    at = f"all {len(points)}" if within == len(points) else f"{within} of {len(points)}"
    goal = docs[GOAL_SUITE]
    checks = {c["policy"]: c for c in goal["live"]["checks"]}
    uniform, sequential = checks["uniform-8"], checks["sequential-c8"]
    fewer = 1.0 - sequential["mean_samples_live"] / uniform["mean_samples_live"]
    return "\n".join(
        [
            "Live operating points run end to end through the proxy with the OpenAI SDK, "
            f"`reward` reranker on the replay's `/v1/verify`: uniform and adaptive best-of-k "
            f"{decided}, and sequential best-of-k (the proxy's `sequential:` mode, verifier "
            "stop, round sizes from training folds) decides round by round; "
            f"{at} points of the {count(len(docs))} suites realise the offline mean samples "
            "and quality within 2 standard errors (errors exact per prompt; "
            "`bench/results/REPORT.md` has the table). On HumanEval, for example:",
            "",
            *live_points_table(goal, LIVE_EXAMPLE),
            "",
            "The same seed per prompt makes the runs paired: sequential cap 8 "
            + claim(
                sequential["quality_live"] == uniform["quality_live"],
                "returns what uniform best-of-8 returns",
            )
            + " (the same 8 draws, the first one the verifier accepts) with "
            f"{pct(fewer, 0)} fewer samples.",
        ]
    )
