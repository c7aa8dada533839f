"""The online benchmark's blocks: last-half APGR per suite as a deployment lives it, the goals.

Rendered from ``bench/results/online-<suite>.json`` (an evaluator scores both arms) and
``online-<suite>-none-explore0.05.json`` (5% exploration, no feedback), written by
``adaptive-proxy bench --suite S --online [--explore 0.05 --feedback none] --out bench/results``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.docs.format import claim, join, num, pct

Results = Mapping[str, Mapping[str, Any]]
SUITES = ("routellm-gsm8k", "routellm-mmlu", "routellm-mtbench", "alpaca-eval-ladder")
EXPLORE = "none-explore0.05"
SOURCES = tuple(f"online-{s}{suffix}.json" for s in SUITES for suffix in ("", f"-{EXPLORE}"))


def _pair(results: Results, suite: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    return results[f"online-{suite}"], results[f"online-{suite}-{EXPLORE}"]


def _shortfall(goals: Mapping[str, Any], *names: str) -> float:
    """How far the worst of the goals ``names`` is missed (0: all met)."""
    return float(max(0.0, *(-goals[n]["margin"] for n in names)))


def table(results: Results) -> str:
    """One row per suite: static, out of fold, last half with both arms scored, with 5%
    exploration alone, each goal and the commands."""
    rows = [
        "| suite | prompts | static prior | out of fold | both arms scored | goal: ≥ out of fold "
        "− 0.02 and ≥ static + 0.05 | explore 5% alone (explored labels, share of cost) | goal: "
        "≥ static + 0.02 where ≥ 500 explored labels | commands |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for suite in SUITES:
        a, e = _pair(results, suite)
        miss = _shortfall(a["goals"], "final_half_vs_cv", "final_half_vs_static")
        goal = "met" if miss == 0 else f"missed by {num(miss)}"
        ge = e["goals"]["final_half_vs_static_explore"]
        if not ge["applies"]:
            explore_goal = "does not apply"
        else:
            explore_goal = "met" if ge["met"] else f"missed by {num(-ge['margin'])}"
        rows.append(
            f"| {suite} | {a['n_prompts']:,} | {num(a['static_apgr'])} | {num(a['cv_apgr'])} | "
            f"{num(a['final_half_apgr'])} ({a['promotions']} promotions) | {goal} | "
            f"{num(e['final_half_apgr'])} ({e['explored_labels']:,}, "
            f"{pct(e['explore_cost_share'])}) | {explore_goal} | "
            f"`adaptive-proxy bench --suite {suite} --online`, `… --explore 0.05 --feedback none` |"
        )
    return "\n".join(rows)


def findings(results: Results) -> str:
    """What the table says: where the goals are met, by how much the others are missed, why."""
    met, missed = [], []
    for suite in SUITES:
        a, _ = _pair(results, suite)
        lift = a["final_half_apgr"] - a["static_apgr"]
        if _shortfall(a["goals"], "final_half_vs_cv", "final_half_vs_static") == 0:
            met.append(f"{suite} (+{num(lift)})")
        else:
            g = a["goals"]
            refits = [r for r in a["refits"] if r["status"] in ("promoted", "rejected")]
            why = (
                f": its {a['n_prompts']:,} prompts never reach the "
                f"{a['learner']['settings']['min_labels']} labels of a first refit with the "
                f"settings chosen on the other suites (`{a['learner']['candidate']}`), so the "
                "prior serves throughout"
                if not refits
                else ""
            )
            missed.append(
                f"{suite}, by {num(max(0.0, -g['final_half_vs_cv']['margin']))} against out of "
                f"fold − 0.02 and {num(max(0.0, -g['final_half_vs_static']['margin']))} against "
                f"static + 0.05{why}"
            )
    lines = [
        "With an evaluator scoring both arms, the last half reaches out of fold − 0.02 and static "
        f"+ 0.05 on {join(met)}" + (f"; it misses on {join(missed)}." if missed else ".")
    ]
    applies = [
        s
        for s in SUITES
        if _pair(results, s)[1]["goals"]["final_half_vs_static_explore"]["applies"]
    ]
    rest = [s for s in SUITES if s not in applies]
    for suite in applies:
        a, e = _pair(results, suite)
        ge = e["goals"]["final_half_vs_static_explore"]
        verdict = "met" if ge["met"] else "missed"
        lines.append(
            f"With 5% exploration alone, {suite} accrues {e['explored_labels']:,} explored labels: "
            f"{num(e['final_half_apgr'] - e['static_apgr'])} over the static prior (goal +0.02, "
            f"{verdict}) at {pct(e['explore_cost_share'])} of cost."
        )
    if rest:
        costs = [_pair(results, s)[1] for s in rest]
        worst = min(c["final_half_apgr"] - c["static_apgr"] for c in costs)
        lines.append(
            claim(
                all(c["promotions"] == 0 for c in costs),
                f"On {join(rest)} the explored labels "
                f"({join([str(c['explored_labels']) for c in costs])}) never reach a first refit: "
                f"exploration there is pure cost (down to {num(worst)} APGR, "
                f"{pct(min(c['explore_cost_share'] for c in costs))}–"
                f"{pct(max(c['explore_cost_share'] for c in costs))} of cost).",
            )
        )
    return "\n".join(lines)


LIVE_SUITE = "routellm-gsm8k"
LIVE_SOURCES = (f"online-{LIVE_SUITE}.json", f"online-{LIVE_SUITE}-live.json")


def _promotions(n: int) -> str:
    return f"{n} promotion" + ("" if n == 1 else "s")


def live(results: Results) -> str:
    """The live run (``--online --live``) beside the simulator's, and what the gap is made of."""
    sim, run = results[f"online-{LIVE_SUITE}"], results[f"online-{LIVE_SUITE}-live"]
    info = run["live"]
    beside = info["simulator_same_learner"]
    rule = beside["learner"]["rule"]
    tuned = sim["learner"]["settings"]["rule"]
    first = info["first_promotion_request"]
    promoted = "no promotion" if first is None else f"first served at request {first:,}"
    rule_gap = abs(beside["final_half_apgr"] - run["final_half_apgr"]) < abs(
        sim["final_half_apgr"] - run["final_half_apgr"]
    )
    limit = run["settings"]["limit"]
    command = f"adaptive-proxy bench --suite {LIVE_SUITE} --online --live --out bench/results"
    if limit is not None:
        command = command.replace(" --out", f" --limit {limit} --out")
    return claim(
        rule_gap,
        f"Through the live proxy (`{command}`: the replay upstream and the proxy as real "
        "servers, the OpenAI SDK as client, both arms' recorded rewards posted to "
        "`POST /v1/adaptive/feedback` by `x-request-id`, the `adaptive-proxy learn --config` "
        "process beside it; the route's threshold from `budget: {kind: fraction_expensive, "
        f"target: {run['settings']['expensive_share']:g}, window: "
        f"{run['settings']['calibration_requests']}}}`, as a route policy has no share-of-last-N "
        f"rule), {LIVE_SUITE}'s last half reaches {num(run['final_half_apgr'])} on "
        f"{run['n_prompts']:,} requests against the simulator's {num(sim['final_half_apgr'])} "
        f"(static prior {num(run['static_apgr'])}, the same stream), with "
        f"{_promotions(run['promotions'])} ({promoted}) against {sim['promotions']}. The "
        "simulator on the very same "
        "stream with the learner process's own settings (`learning:` sets only `refit_every` / "
        f"`min_labels`, so it promotes at z ≥ {rule['min_z']:g} on ≥ {rule['min_holdout']} "
        f"held-out rows, not the tuned z ≥ {tuned['min_z']:g} on ≥ {tuned['min_holdout']}) "
        f"gives {num(beside['final_half_apgr'])} with {_promotions(beside['promotions'])}: on "
        "this run the gap to the simulator is the promotion rule's more than HTTP's or "
        "asynchronous promotion's. Which labels a live fit sees depends on when the learner "
        "polls (the stream does not wait for it), so the live figure and its promotions vary "
        "from run to run.",
    )
