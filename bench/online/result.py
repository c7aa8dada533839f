"""The online benchmark's result: per-window APGR, the last half, the goals, the plot.

``online-<suite>.json`` (``online-<suite>-<feedback>[-explore<F>].json`` for settings other than
the evaluator's ``arm_rewards`` without exploration), keys:

* ``windows``: per window of ``window`` requests, ``{"start", "end", "apgr", "static",
  "labels"}``: the APGR of the heads in force on that window's requests (exploration spend
  included as cost, :mod:`bench.online.metrics`), the static prior's APGR on the same requests,
  and the labels that had arrived by the window's end;
* ``final_half_apgr`` / ``static_apgr``: the same two over the stream's last half, pooled;
* ``cv_apgr``: the suite's committed out-of-fold APGR (the reference the learner aims at);
* ``explore_cost_share``: exploration spend / (routing spend + exploration spend);
* ``goals``: the issue's goals, each with its target, the measured margin and whether it is met;
* ``window_details``, ``refits``, ``settings``, ``learner``, ``provenance``.
"""

from __future__ import annotations

import json
import math
import platform
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.online.metrics import finite_or_none, rounded, stretch_apgr
from bench.online.simulate import OnlineSettings, Trace
from bench.online.suite import OnlineSuite
from proxy.learn.learner import LearnerSettings

#: The issue's goals: with an evaluator's arm rewards, the last half within this of the
#: out-of-fold figure and this above the static prior; with exploration alone, this above static
#: wherever at least ``EXPLORE_MIN_LABELS`` explored labels accrue, spending at most this share.
CV_TOLERANCE = 0.02
ARM_REWARDS_LIFT = 0.05
EXPLORE_LIFT = 0.02
EXPLORE_MIN_LABELS = 500
EXPLORE_MAX_COST_SHARE = 0.05


def result_name(suite: str, settings: OnlineSettings) -> str:
    """The result's file stem: ``online-<suite>``, suffixed for non-default feedback/exploration."""
    stem = f"online-{suite}"
    if settings.feedback != "arm_rewards" or settings.explore_fraction > 0:
        stem += f"-{settings.feedback}"
        if settings.explore_fraction > 0:
            stem += f"-explore{settings.explore_fraction:g}"
    return stem


def _stretch(suite: OnlineSuite, trace: Trace, start: int, end: int) -> dict[str, float]:
    rows = trace.order[start:end]
    reward, cost = suite.reward[rows], suite.cost_usd[rows]
    explore_usd = float(trace.explore_cost_usd[start:end].sum())
    expensive = trace.expensive[start:end]
    routed_usd = float(np.where(expensive, cost[:, 1], cost[:, 0]).sum())
    return {
        "apgr": stretch_apgr(trace.score[start:end], reward, cost, explore_cost_usd=explore_usd),
        "apgr_routing": stretch_apgr(trace.score[start:end], reward, cost),
        "static": stretch_apgr(trace.static_score[start:end], reward, cost),
        "frac_expensive": float(expensive.mean()),
        "quality": float(np.where(expensive, reward[:, 1], reward[:, 0]).mean()),
        "cost_usd": routed_usd,
        "explore_cost_usd": explore_usd,
        "explored": int(trace.explored[start:end].sum()),
    }


def _goal(value: float | None, target: float | None, applies: bool = True) -> dict[str, Any]:
    margin = None if value is None or target is None else value - target
    return {
        "target": target,
        "value": value,
        "margin": margin,
        "applies": applies,
        "met": None if not applies or margin is None else margin >= 0,
    }


def build_result(
    suite: OnlineSuite,
    trace: Trace,
    settings: OnlineSettings,
    learner_settings: LearnerSettings,
    *,
    learner_choice: Mapping[str, Any],
) -> dict[str, Any]:
    """The result document of one run."""
    n = suite.n
    windows, details = [], []
    for start in range(0, n, settings.window):
        end = min(start + settings.window, n)
        w = _stretch(suite, trace, start, end)
        labels = int(trace.labels[end - 1])
        windows.append(
            {
                "start": start,
                "end": end,
                "apgr": finite_or_none(w["apgr"]),
                "static": finite_or_none(w["static"]),
                "labels": labels,
            }
        )
        details.append(
            {"start": start, "end": end, **w, "head_version": trace.head_version[end - 1]}
        )
    half = _stretch(suite, trace, n // 2, n)
    whole = _stretch(suite, trace, 0, n)
    explore_usd = float(trace.explore_cost_usd.sum())
    share = explore_usd / (whole["cost_usd"] + explore_usd) if explore_usd > 0 else 0.0
    final, static = finite_or_none(half["apgr"]), finite_or_none(half["static"])
    cv = suite.cv_apgr
    explored_labels = int(trace.explored.sum())
    goals: dict[str, Any] = {}
    if settings.feedback == "arm_rewards":
        goals["final_half_vs_cv"] = _goal(final, None if cv is None else cv - CV_TOLERANCE)
        goals["final_half_vs_static"] = _goal(
            final, None if static is None else static + ARM_REWARDS_LIFT
        )
    if settings.explore_fraction > 0:
        goals["explore_cost_share"] = {
            "target": EXPLORE_MAX_COST_SHARE,
            "value": share,
            "met": share <= EXPLORE_MAX_COST_SHARE,
        }
        goals["final_half_vs_static_explore"] = _goal(
            final,
            None if static is None else static + EXPLORE_LIFT,
            applies=explored_labels >= EXPLORE_MIN_LABELS,
        )
    doc: dict[str, Any] = {
        "suite": suite.name,
        "n_prompts": n,
        "windows": windows,
        "final_half_apgr": final,
        "static_apgr": static,
        "cv_apgr": cv,
        "explore_cost_share": share,
        "final_half_apgr_routing": finite_or_none(half["apgr_routing"]),
        "whole_run": {k: whole[k] for k in ("apgr", "apgr_routing", "static")},
        "labels": int(trace.labels[-1]) if n else 0,
        "explored_labels": explored_labels,
        "promotions": sum(e.report.status == "promoted" for e in trace.refits),
        "goals": goals,
        "window_details": details,
        "refits": [e.to_json() for e in trace.refits],
        "settings": {
            **asdict(settings),
            "order": f"numpy.random.default_rng({settings.seed}).permutation(n_prompts)",
            "decision": f"expensive iff the served gain reaches the threshold that sends "
            f"{settings.expensive_share:g} of the last {settings.calibration_requests} "
            "requests (rescored on every swap) to the expensive arm",
            "apgr": "RouteLLM's APGR of a threshold sweep on each request's served gain "
            "(predictor_onnx.routing); exploration spend shifts the curve by its cost in "
            "expensive-call units (bench.online.metrics)",
        },
        "learner": {
            "settings": _learner_json(learner_settings),
            **dict(learner_choice),
        },
        "provenance": {
            "arms": {"cheap": suite.arm_models[0], "expensive": suite.arm_models[1]},
            **dict(suite.provenance),
            "store": "SqliteOutcomeStore in a temporary folder, written through OutcomeLog",
            "outcome_log": trace.log_counters,
            "seconds": round(trace.seconds, 1),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
    }
    return rounded(doc)  # type: ignore[no-any-return]


def _learner_json(settings: LearnerSettings) -> dict[str, Any]:
    data = asdict(settings)
    data["l2_grid"] = list(settings.l2_grid)
    return data


def write_result(out_dir: Path, stem: str, doc: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and its learning-curve plot ``<stem>.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    png = out_dir / f"{stem}.png"
    plot_learning_curve(png, doc)
    return path, png


def plot_learning_curve(path: Path, doc: Mapping[str, Any]) -> None:
    """APGR per window: the learning head, the static prior, the out-of-fold reference; the
    labels so far on a second axis; promotions as ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = doc["windows"]
    ends = [w["end"] for w in windows]

    def series(key: str) -> list[float]:
        return [math.nan if w[key] is None else w[key] for w in windows]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(ends, series("apgr"), "-o", ms=3, label="learning head (per window)")
    ax.plot(ends, series("static"), "--", label="static prior (per window)")
    if doc.get("cv_apgr") is not None:
        ax.axhline(doc["cv_apgr"], color="k", ls=":", label=f"out-of-fold {doc['cv_apgr']:.3f}")
    n = doc["n_prompts"]
    for key, label, color in (
        ("final_half_apgr", "learning head, last half", "C0"),
        ("static_apgr", "static prior, last half", "C1"),
    ):
        if doc.get(key) is not None:
            ax.hlines(doc[key], n / 2, n, colors=color, lw=3, alpha=0.5, label=f"{label}")
    for refit in doc["refits"]:
        if refit["status"] == "promoted":
            ax.axvline(refit["request"], color="C2", lw=0.6, alpha=0.4)
    ax.axhline(0.5, color="grey", lw=0.8, alpha=0.5)
    ax.set_xlabel("requests (promotions: green ticks)")
    ax.set_ylabel("APGR")
    labels_ax = ax.twinx()
    labels_ax.plot(ends, [w["labels"] for w in windows], color="grey", lw=0.8, alpha=0.6)
    labels_ax.set_ylabel("labels so far", color="grey")
    settings = doc["settings"]
    title = f"{doc['suite']} online: feedback {settings['feedback']}"
    if settings["explore_fraction"]:
        title += (
            f", explore {settings['explore_fraction']:g} "
            f"({100 * doc['explore_cost_share']:.1f}% of cost)"
        )
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
