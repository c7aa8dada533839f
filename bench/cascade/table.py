"""The tables ``python -m bench.cascade`` prints (from the dicts :mod:`bench.cascade.run`
writes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench.cascade.frontier import EQUAL_QUALITY_RULE
from bench.docs import format as fmt


def _pct(x: float) -> str:
    if np.isnan(x):
        return "—"
    # Savings against a dominating frontier run to thousands of percent: no decimals there.
    text = f"{100 * x:,.0f}%" if abs(x) >= 10 else f"{100 * x:.1f}%"
    return "0.0%" if text == "-0.0%" else text


def _ci(ci: Sequence[float]) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} pts"


def _pts_ci(ci: Sequence[float]) -> str:
    return f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _frontier_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| suite | cascade | all-expensive accuracy, cost/request | cheapest no-prediction mix "
        "reaching it | its cost/request | single systems on the frontier |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        f = r["frontier"]
        target = f["at_all_expensive_accuracy"]
        mix = " + ".join(f"{100 * m['weight']:.0f}% {m['system']}" for m in target["mix"])
        on = ", ".join(
            f"{s['system']} ({_pct(s['accuracy'])}, ${s['cost_usd_per_request']:.6f})"
            for s in f["systems"]
            if s["on_frontier"]
        )
        lines.append(
            f"| {r['suite']} | {r['cascade']} | {_pct(target['accuracy'])}, "
            f"${r['cost_usd_per_request']['expensive']:.6f} | {mix} | "
            f"${target['cost_usd_per_request']:.6f} | {on} |"
        )
    return lines


def _point_saving(row: Mapping[str, Any]) -> str:
    """The saving against the all-expensive stage, "at equal quality" only where the rule holds."""
    saved = f"{_pct(row['cost_saved'])} {_ci(row['cost_saved_ci95'])}"
    if row["equal_quality"]:
        return f"{saved} at equal quality"
    return f"{saved} at {_pts(row['delta_quality'])} (not equal quality)"


def _frontier_saving(row: Mapping[str, Any]) -> str:
    """The saving against the frontier; where the policy is more accurate than every single
    system it is compared with the most accurate one, and says by how much it is above it."""
    saved = f"{_pct(row['saved_vs_frontier'])} {_ci(row['saved_vs_frontier_ci95'])}"
    above = row["accuracy"] - row["frontier_accuracy"]
    return f"{saved}, {_pts(above)} above every single system" if above > 1e-12 else saved


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Markdown tables: the frontier, curve savings at equal quality, fixed operating points."""
    lines = _frontier_lines(results)
    lines += [
        "",
        "| suite | cascade | policy | cost saved at equal quality vs all-expensive [95% CI] | "
        "vs the no-prediction frontier [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        for row in r["curves"]:
            lines.append(
                f"| {r['suite']} | {r['cascade']} | {row['policy']} | "
                f"{_pct(row['saved_at_equal_quality'])} {_ci(row['saved_ci95'])} | "
                f"{_pct(row['saved_vs_frontier'])} {_ci(row['saved_vs_frontier_ci95'])} |"
            )
    lines += [
        "",
        "| suite | cascade | fixed policy | escalated | accuracy (all-expensive) | "
        "Δ accuracy [95% CI] | cost saved vs all-expensive [95% CI] | "
        "vs the frontier at its accuracy [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for row in r["points"]:
            lines.append(
                f"| {r['suite']} | {r['cascade']} | {row['policy']} | {_pct(row['escalated'])} | "
                f"{_pct(row['accuracy'])} ({_pct(r['accuracy']['all_expensive'])}) | "
                f"{_pts(row['delta_quality'])} {_pts_ci(row['delta_quality_ci95'])} | "
                f"{_point_saving(row)} | {_frontier_saving(row)} |"
            )
    lines += ["", f"Equal quality: {EQUAL_QUALITY_RULE}."]
    return "\n".join(lines)


# The README's columns: curve savings at equal accuracy, then the deployable fixed point.
README_CURVES = (
    ("input-only route", "input-only route (prompt prior)"),
    ("agreement rule", "cascade: agreement rule"),
    ("disagreement, then prior", "cascade: disagreement, then prior"),
    ("learned, evidence + prior", "cascade: learned, evidence + prior"),
)
README_POINT = "learned + prior, fixed threshold from training folds"


def _readme_pct(x: float, ci: Sequence[float]) -> str:
    digits = 0 if abs(x) >= 10 else 1
    return f"{fmt.pct(x, digits)} {fmt.span(ci, digits)}"


def _readme_point(case: Mapping[str, Any]) -> tuple[str, str]:
    row = next(r for r in case["points"] if r["policy"] == README_POINT)
    delta = f"{fmt.pts(row['delta_quality'])}"
    delta = delta if row["equal_quality"] else f"**{delta}**"
    point = (
        f"{delta} {fmt.pts_span(row['delta_quality_ci95'])}, "
        f"{fmt.pct_ci(row['cost_saved'], row['cost_saved_ci95'])}"
        + ("" if row["equal_quality"] else ": not equal accuracy")
    )
    x = row["saved_vs_frontier"]
    frontier = _readme_pct(x, row["saved_vs_frontier_ci95"])
    if x < -1.0:
        first, _, rest = frontier.partition(" ")
        frontier = f"**{first}** {rest}: {fmt.times(1.0 - x)} its cost"
    above = row["accuracy"] - row["frontier_accuracy"]
    if above > 1e-12:
        frontier += f", {fmt.pts(above)} above every single system"
    return point, frontier


def readme_table(results: Sequence[Mapping[str, Any]], cascades: Sequence[str]) -> list[str]:
    """The README's cascade table: for each named cascade, the curves' savings at equal
    accuracy and the fixed threshold's operating point, also against the frontier."""
    cases = {r["cascade"]: r for r in results}
    lines = [
        "| cascade (recorded GSM8K answers) | "
        + " | ".join(label for label, _ in README_CURVES)
        + " | fixed threshold from training folds: Δ accuracy, cost saved | same point "
        "against the no-prediction frontier |",
        "|---|" + "---|" * (len(README_CURVES) + 2),
    ]
    for name in cascades:
        case = cases[name]
        curves = {r["policy"]: r for r in case["curves"]}
        cells = [
            fmt.pct_ci(curves[p]["saved_at_equal_quality"], curves[p]["saved_ci95"])
            for _, p in README_CURVES
        ]
        lines.append(f"| {name} | " + " | ".join([*cells, *_readme_point(case)]) + " |")
    return lines
