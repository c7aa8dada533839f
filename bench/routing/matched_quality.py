"""The routing suites' headline at matched quality: cost saved against random mixing, and the
expected-value limit of prompt-only prediction.

RouteLLM's APGR/CPT stay as they are (its own measure, for comparison). Beside them:

- *Saved against random mixing at PGR t*: random mixing (each prompt to the expensive arm with
  a fixed probability; for a ladder, mixing whole arms along the cost axis) recovers a share t of
  the quality gap at cost t (for a ladder, at the cost where the upper convex hull of the single
  arms reaches it). Saved = 1 − the router's cost to reach t / random mixing's cost.
- *Expected-value limit* (GSM8K suites): a one-factor item-response model fitted across the six
  recorded GSM8K systems (:mod:`bench.routing.irt`) gives each question a success probability per
  system.
  Routing by the true gain of those probabilities is the best any prompt-only predictor could do;
  its APGR, and the router's, are computed in expectation under the same probabilities, so
  neither is credited with knowing which single recorded draw happened to fail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.routing.irt import fit_one_factor_irt
from bench.routing.metrics import apgr, cost_to_reach, cpt, threshold_sweep
from bench.routing.random_baseline import RANDOM_DRAWS, whole_arm_mix_interval

__all__ = [
    "GSM8K_SYSTEMS",
    "add_matched_quality",
    "explanation_lines",
    "whole_arm_hull",
    "whole_arm_mix",
]

PGR_TARGETS = (0.5, 0.8)
GSM8K_SYSTEMS = (
    "6b_finetuning",
    "6b_verification",
    "175b_finetuning",
    "175b_verification",
    "weak",
    "strong",
)
# suite -> pair -> (cheap system, expensive system, predictor output ranking the prompts)
GSM8K_PAIRS: Mapping[str, Mapping[str, tuple[str, str, str]]] = {
    "routellm-gsm8k": {"main": ("weak", "strong", "gain")},
    "gsm8k-procedures": {
        "175b": ("175b_finetuning", "175b_verification", "gain_175b"),
        "6b": ("6b_finetuning", "6b_verification", "gain_6b"),
    },
}
ROUTED = ("routellm-gsm8k", "routellm-mmlu", "routellm-mtbench", "gsm8k-procedures", "gsm8k-ladder")


def _none(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _saved(router_cost: float | None, random_cost: float) -> float | None:
    if router_cost is None or not np.isfinite(router_cost) or random_cost <= 0:
        return None
    return float(1.0 - router_cost / random_cost)


def whole_arm_hull(
    arms: Sequence[Mapping[str, Any]], low: str, high: str
) -> list[tuple[str, float, float]]:
    """``(arm, normalised cost, quality)`` of the arms on the upper convex hull of the single
    arms, cheapest first (cost 0 = arm ``low``, 1 = arm ``high``)."""
    by = {a["arm"]: a for a in arms}
    c0, c1 = by[low]["cost_usd_per_request"], by[high]["cost_usd_per_request"]
    pts = sorted(
        ((a["cost_usd_per_request"] - c0) / (c1 - c0), a["quality"], a["arm"]) for a in arms
    )
    hull: list[tuple[float, float, str]] = []
    for p in pts:
        if hull and p[1] <= hull[-1][1]:
            continue
        while len(hull) >= 2 and (hull[-1][1] - hull[-2][1]) * (p[0] - hull[-2][0]) <= (
            p[1] - hull[-2][1]
        ) * (hull[-1][0] - hull[-2][0]):
            hull.pop()
        hull.append(p)
    return [(arm, x, y) for x, y, arm in hull]


def whole_arm_mix(
    arms: Sequence[Mapping[str, Any]], low: str, high: str
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised cost and quality of the upper convex hull of the single arms (cost 0 = arm
    ``low``, 1 = arm ``high``): what mixing whole arms at random reaches, in expectation."""
    hull = whole_arm_hull(arms, low, high)
    return np.asarray([x for _, x, _ in hull]), np.asarray([y for _, _, y in hull])


def _whole_arm_interval(out_dir: Path, suite: str, hull: Sequence[str]) -> list[float | None]:
    """The spread of whole-arm random mixing over random draws, from the suite's records."""
    recs = list(_records(out_dir, suite).values())
    reward = np.asarray([[r["outcome"][a] for a in hull] for r in recs], np.float64)
    cost = np.asarray([[r["cost_usd"][a] for a in hull] for r in recs], np.float64)
    return whole_arm_mix_interval(reward, cost, list(range(len(hull))))


def _records(out_dir: Path, suite: str) -> dict[str, dict[str, Any]]:
    path = out_dir / f"{suite}.records.jsonl"
    with path.open(encoding="utf-8") as fh:
        rows = (json.loads(line) for line in fh if line.strip())
        return {r["prompt_id"]: r for r in rows}


def _ev_limit(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Expected-value figures of every GSM8K pair (empty if a GSM8K suite is missing)."""
    if not all((out_dir / f"{s}.records.jsonl").is_file() for s in GSM8K_PAIRS):
        return {}
    recs = {s: _records(out_dir, s) for s in GSM8K_PAIRS}
    ids = [i for i in recs["routellm-gsm8k"] if all(i in r for r in recs.values())]
    outcome = [{k: v for r in recs.values() for k, v in r[i]["outcome"].items()} for i in ids]
    y = np.asarray([[o[s] for s in GSM8K_SYSTEMS] for o in outcome])
    model = fit_one_factor_irt(y)
    prob = model.success_probabilities()
    out: dict[str, dict[str, Any]] = {}
    for suite, pairs in GSM8K_PAIRS.items():
        suite_out: dict[str, Any] = {
            "model": "one-factor 2PL IRT over the six GSM8K systems, marginal ML; success "
            "probability = posterior mean given the question's six outcomes",
            "n_questions": len(ids),
            "discrimination": dict(
                zip(GSM8K_SYSTEMS, model.discrimination.round(3).tolist(), strict=True)
            ),
            "pairs": {},
        }
        for pair, (cheap, expensive, output) in pairs.items():
            pc, pe = prob[:, GSM8K_SYSTEMS.index(cheap)], prob[:, GSM8K_SYSTEMS.index(expensive)]
            scores = {"limit": pe - pc}
            for scheme in ("cv", "lodo"):
                scores[scheme] = np.asarray(
                    [recs[suite][i]["predictions"][scheme][output] for i in ids]
                )
            figures: dict[str, Any] = {
                "q_cheap_expected": float(pc.mean()),
                "q_expensive_expected": float(pe.mean()),
            }
            for name, s in scores.items():
                sw = threshold_sweep(s, pc, pe, split_ties=name == "limit")
                figures[f"apgr_{name}_expected"] = apgr(
                    sw.frac_expensive, sw.quality, pc.mean(), pe.mean()
                )
                for t in PGR_TARGETS:
                    c = cpt(sw.frac_expensive, sw.quality, pc.mean(), pe.mean(), t)
                    figures[f"saved_vs_random_pgr{round(100 * t)}_{name}_expected"] = _saved(c, t)
            suite_out["pairs"][pair] = figures
        out[suite] = suite_out
    return out


def add_matched_quality(out_dir: Path) -> list[str]:
    """Add ``matched_quality`` (and flat ``saved_vs_random_*``/``apgr_ev_limit*`` keys) to each
    routed suite's JSON in ``out_dir``; returns the suites updated."""
    ev = _ev_limit(out_dir)
    done = []
    for suite in ROUTED:
        path = out_dir / f"{suite}.json"
        if not path.is_file():
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        mq: dict[str, Any] = {"pgr_targets": list(PGR_TARGETS)}
        random_cost = {t: t for t in PGR_TARGETS}
        if "ladder" in doc:
            lad = doc["ladder"]
            hi = lad["reference_high"]
            xs, ys = whole_arm_mix(lad["arms"], lad["reference_low"], hi)
            by = {a["arm"]: a["quality"] for a in lad["arms"]}
            q_lo, q_hi = by[lad["reference_low"]], by[lad["reference_high"]]
            mq["apgr_random_whole_arms"] = apgr(xs, ys, q_lo, q_hi)
            if (out_dir / f"{suite}.records.jsonl").is_file():
                hull = [a for a, _, _ in whole_arm_hull(lad["arms"], lad["reference_low"], hi)]
                mq["apgr_random_whole_arms_ci95"] = _whole_arm_interval(out_dir, suite, hull)
                doc["apgr_random_whole_arms_ci95"] = mq["apgr_random_whole_arms_ci95"]
                mq["apgr_random_whole_arms_note"] = (
                    "apgr_random_whole_arms = APGR of the hull (the expected curve of mixing "
                    f"whole arms {' → '.join(hull)} at random); its ci95 = 2.5 and 97.5 "
                    f"percentiles over {RANDOM_DRAWS} random mixings of these prompts "
                    "(each hull segment a random order of the prompts; realised cost)"
                )
            random_cost = {t: cost_to_reach(xs, ys, q_lo + t * (q_hi - q_lo)) for t in PGR_TARGETS}
            doc["apgr_random_whole_arms"] = mq["apgr_random_whole_arms"]
        for t in PGR_TARGETS:
            for scheme in ("cv", "lodo"):
                key = f"saved_vs_random_pgr{round(100 * t)}_{scheme}"
                mq[key] = _saved(_none(doc.get(f"cpt{round(100 * t)}_{scheme}")), random_cost[t])
                doc[key] = mq[key]
        if suite in ev:
            mq["ev_limit"] = ev[suite]
            head = next(iter(GSM8K_PAIRS[suite]))
            pair = ev[suite]["pairs"][head]
            doc["apgr_ev_limit"] = pair["apgr_limit_expected"]
            doc["apgr_cv_expected"] = pair["apgr_cv_expected"]
        doc["matched_quality"] = mq
        path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        done.append(suite)
    return done


def explanation_lines() -> list[str]:
    """Plain-words explanation for ``REPORT.md``."""
    return [
        "### Reading the routing suites",
        "",
        "- **Saved against random mixing at PGR 0.5 / 0.8.** Sending a random share c of "
        "requests to the expensive model recovers the share c of the quality gap (PGR = c) at "
        "the share c of the extra cost. A router earns its keep if it reaches the same PGR for "
        "less: saved = 1 − (router's cost to reach PGR t) / t. For `gsm8k-ladder`, random "
        "mixing means mixing whole arms along the cost axis (the upper convex hull of the six "
        "single arms), which already gives a high APGR because Mixtral is nearly free and "
        "much better than the 6B model.",
        "- **APGR random** is random routing's expectation, in closed form (its expected "
        "quality is linear in the share sent to the expensive arm, so it is 0.5 for a pair and "
        "the hull's APGR for whole arms); the interval beside it is the 2.5–97.5 percentile "
        "range of what one random routing of these same prompts scores "
        f"({RANDOM_DRAWS:,} random draws, prompts held fixed), so a router below its upper "
        "end is not clearly better than luck.",
        "- **Expected-value limit (GSM8K).** The old oracle knew each arm's one recorded outcome, "
        "so most of its 'saving' came from knowing which single draw happened to fail — "
        "sampling noise no predictor can learn. Instead, a one-factor item-response model is "
        "fitted across the six recorded GSM8K systems (6B/175B, one sample or best-of-100, "
        "Mixtral, GPT-4): each question gets a difficulty, each system a slope and intercept, "
        "so each question has a success probability per system. Routing by the true gain of "
        "those probabilities is the best any prompt-only predictor could do; its APGR and the "
        "router's are both computed in expectation under those probabilities.",
        "",
    ]
