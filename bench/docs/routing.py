"""The docs' routing blocks (:mod:`bench.docs.run`): chat routing by cost, the routing suites'
table and what it shows (from ``bench/results/<suite>.json``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from bench.docs.format import claim, count, join, num, pct, usd
from bench.report import summary_table
from bench.routing.random_baseline import RANDOM_DRAWS
from bench.routing.report_text import ROUTELLM_PUBLISHED as ROUTELLM
from bench.routing.suites import SUITES

Results = Mapping[str, Mapping[str, Any]]

LADDER = "alpaca-eval-ladder"
ROUTING_SOURCES = tuple(f"{name}.json" for name in SUITES)
WORDS = {"routellm-gsm8k": "GSM8K", "routellm-mmlu": "MMLU", "routellm-mtbench": "MT-Bench"}
SCHEMES = {"cv": "out of fold", "lodo": "leave-one-suite-out"}
# The pair each expected-value limit is stated for, in words.
EV_PAIRS = {"routellm-gsm8k": "Mixtral → GPT-4", "gsm8k-procedures": "175B → best-of-100"}
# "Within a point" of win rate.
ONE_POINT = 0.01


def _short(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def chat_ladder(results: Results) -> str:
    """The ``alpaca-eval-ladder`` paragraph."""
    doc = results[LADDER]
    prices = doc["prices"]
    first = next(iter(prices.values()))
    found = re.search(r"litellm (\S+)", first["source"])
    version = found[1] if found else "?"
    keys = ", ".join(
        f"`{p['price_map_key']}` ${p['in_per_mtok_usd']:g}/${p['out_per_mtok_usd']:g}"
        for p in prices.values()
    )
    weak, strong = (_short(prices[doc["pair"][k]]["price_map_key"]) for k in ("weak", "strong"))
    lo, hi = doc["apgr_random_ci95"]
    budgets = [b for b in doc["ladder"]["budgets"] if b["ladder_cv"] is not None]
    off = [b for b in budgets if abs(b["ladder_cv"] - b["random_mix"]) > ONE_POINT]
    but = (
        f" but {count(len(off))} ("
        + "; ".join(
            f"{num(b['ladder_cv'])} against {num(b['random_mix'])} at {usd(b['budget_usd'], 3)}"
            for b in off
        )
        + ")"
        if off
        else ""
    )
    arms = doc["arms"]
    big, dear = arms["llama-2-70b-chat-hf"], arms[doc["pair"]["strong"]]
    return (
        f"**Chat routing by cost** (`{LADDER}`, {doc['n_prompts']} AlpacaEval instructions, "
        "judged win rate; per-token list prices read from litellm's bundled price map, never "
        f"from memory: keys {keys} per Mtok in/out, litellm {version}; each result records the "
        f"key, the litellm version and the date it was read): {weak} → {strong} APGR "
        f"{num(doc['apgr_cv'])} out of fold, {num(doc['apgr_lodo'])} from the shipped predictor "
        f"(never saw AlpacaEval), random {num(doc['apgr_random'])} in expectation (one random "
        f"routing scores {num(lo)}–{num(hi)}, 95% of {RANDOM_DRAWS:,} draws), oracle "
        f"{num(doc['apgr_oracle'])}; the `ladder` policy over {count(len(arms))} models stays "
        f"within a point of random mixing of whole models at every budget{but}; "
        f"llama-2-70b-chat already wins {pct(big['win_rate'], 0)} at "
        f"{pct(big['mean_cost_usd'] / dear['mean_cost_usd'], 0)} of GPT-4's mean cost per "
        "request."
    )


def _routed(results: Results) -> dict[str, Mapping[str, Any]]:
    return {name: results[name] for name in SUITES}


def routing_table(results: Results) -> str:
    """The caption and :func:`bench.report.summary_table` (the table REPORT.md leads with)."""
    routed = _routed(results)
    checks = [c for r in routed.values() for c in r.get("live", {}).get("checks", [])]
    requests = sum(c["requests"] for c in checks)
    decisions = sum(c["decision_mismatches"] for c in checks)
    answers = sum(c["answer_mismatches"] for c in checks)
    modes = join(sorted({str(r["mode"]) for r in routed.values()}))
    return "\n".join(
        [
            f"Latest {modes} run of all {count(len(routed))} routing suites: the live runs sent "
            f"{requests:,} requests at {len(checks)} operating points, with {decisions} "
            f"decision and {answers} answer mismatches against the offline sweep "
            "(`bench/results/REPORT.md` has every table, 95% bootstrap intervals and the "
            "targets; RouteLLM's figures are theirs):",
            "",
            summary_table(routed),
        ]
    )


def _beaten(routed: Results, scheme: str) -> list[str]:
    apgr = [w for n, w in WORDS.items() if routed[n][f"apgr_{scheme}"] > ROUTELLM[n]["apgr"]]
    cpt = [w for n, w in WORDS.items() if routed[n][f"cpt50_{scheme}"] < ROUTELLM[n]["cpt50"]]
    return ([f"its APGR on {join(apgr)}"] if apgr else []) + (
        [f"its CPT(50%) on {join(cpt)}"] if cpt else []
    )


def _versus_routellm(routed: Results) -> str:
    cv, lodo = (_beaten(routed, s) for s in SCHEMES)
    first = (
        f"Out of fold, the predictor beats RouteLLM's best published router: {join(cv)}"
        if cv
        else "Out of fold, the predictor beats none of RouteLLM's best published figures"
    )
    second = join(lodo) if lodo else "none of them"
    return f"{first}; leave-one-suite-out it beats {second}."


def _bracket(r: Mapping[str, Any]) -> Sequence[float]:
    key = "apgr_random_whole_arms_ci95" if "apgr_random_whole_arms" in r else "apgr_random_ci95"
    ci: Sequence[float] = r[key]
    return ci


def _luck(routed: Results) -> str:
    inside, below = [], []
    for name, r in routed.items():
        lo, hi = _bracket(r)
        for scheme, words in SCHEMES.items():
            value = r[f"apgr_{scheme}"]
            item = f"`{name}` {words} ({num(value)})"
            if lo <= value <= hi:
                inside.append(item)
            elif value < lo:
                below.append(item)
    text = ""
    if inside:
        text += (
            f"\nInside it lie {join(inside)}: there the predictor's APGR is within what a "
            "random routing scores by luck."
        )
    if below:
        text += f"\nBelow it, worse than routing at random: {join(below)}."
    return text


def _ev_limit(routed: Results) -> str:
    limited = {n: r for n, r in routed.items() if "apgr_ev_limit" in r and n in EV_PAIRS}
    ev = routed["routellm-gsm8k"]["matched_quality"]["ev_limit"]
    limits = ", ".join(f"{num(r['apgr_ev_limit'])} for {EV_PAIRS[n]}" for n, r in limited.items())
    expected = " / ".join(num(r["apgr_cv_expected"]) for r in limited.values())
    shares = join(
        [
            pct((r["apgr_cv_expected"] - 0.5) / (r["apgr_ev_limit"] - 0.5), 0)
            for r in limited.values()
        ]
    )
    return (
        "the expected-value limit of a one-factor item-response model fitted across the "
        f"{count(len(ev['discrimination']))} GSM8K systems ({limits}) is what a perfect "
        f"prompt-only predictor could reach, against the predictor's {expected} in the same "
        f"expectation ({shares} of the way from random to the limit)."
    )


def routing_findings(results: Results) -> str:
    """What the routing table shows, every figure read from it."""
    routed = _routed(results)
    pgr50 = " / ".join(pct(routed[n]["saved_vs_random_pgr50_cv"], 0) for n in WORDS)
    procedures, ladder = routed["gsm8k-procedures"], routed["gsm8k-ladder"]
    return (
        _versus_routellm(routed)
        + "\nAgainst random mixing at matched quality (PGR 0.5, out of fold) it saves "
        f"{pgr50} of the expensive calls on {' / '.join(WORDS.values())}, and "
        f"{pct(procedures['saved_vs_random_pgr50_cv'], 0)} on `gsm8k-procedures`; on "
        "`gsm8k-ladder`, mixing whole arms with no prediction already gives APGR "
        f"{num(ladder['apgr_random_whole_arms'])}, against the ladder's "
        f"{num(ladder['apgr_cv'])}.\nAPGR random is random routing's expectation (0.5 for a "
        "pair, since its expected quality is linear in the share sent to the expensive arm); "
        f"the bracket is what 95% of {RANDOM_DRAWS:,} single random routings of the same "
        "prompts score, recomputed from the run's per-prompt records (`--rederive`)."
        + _luck(routed)
        + "\n"
        + claim(
            all(r["apgr_oracle"] > 1.0 for r in routed.values()),
            "The realised-outcome oracle (APGR above 1) mostly knows which single draw failed;",
        )
        + " "
        + _ev_limit(routed)
        + "\nThe matched-quality columns are computed from the run's per-prompt records "
        "(`bench.routing.matched_quality`)."
    )
