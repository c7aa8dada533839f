"""``python -m bench.online.tune --fold A|B``: choose the learner's settings on one fold.

Runs every candidate of :data:`bench.online.choice.CANDIDATES` on every suite of the fold, with
both feedback settings the issue measures (``arm_rewards``; ``none`` with 5% exploration), and
scores a candidate by the mean last-half APGR lift over the static prior. Writes
``online-tuning-<fold>.json`` into ``--out`` (default: a new temporary folder) with every figure
and the winner; :data:`bench.online.choice.CHOSEN` is where the winner is recorded for the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.online.choice import CANDIDATES, FOLDS, SERVED_BY
from bench.online.prepare import prepare_suite
from bench.online.result import build_result
from bench.online.simulate import OnlineSettings, simulate
from bench.online.suite import OnlineSuite

#: The runs a candidate is scored on, per suite.
TUNING_RUNS: tuple[OnlineSettings, ...] = (
    OnlineSettings(feedback="arm_rewards"),
    OnlineSettings(feedback="none", explore_fraction=0.05),
)


async def score_candidate(
    name: str, suites: Sequence[OnlineSuite], *, progress: bool
) -> dict[str, Any]:
    """One candidate's last-half lift on every (suite, run), and their mean."""
    runs = []
    for suite in suites:
        settings = replace(CANDIDATES[name], embedding_dim=suite.embedding_dim)
        for online in TUNING_RUNS:
            with tempfile.TemporaryDirectory(prefix="adaptive-online-tune-") as work:
                trace = await simulate(
                    suite, online, settings, workdir=Path(work), progress=progress
                )
            doc = build_result(suite, trace, online, settings, learner_choice={})
            final, static = doc["final_half_apgr"], doc["static_apgr"]
            runs.append(
                {
                    "suite": suite.name,
                    "feedback": online.feedback,
                    "explore": online.explore_fraction,
                    "final_half_apgr": final,
                    "static_apgr": static,
                    "lift": None if final is None or static is None else final - static,
                    "promotions": doc["promotions"],
                    "seconds": round(trace.seconds, 1),
                }
            )
    lifts = [r["lift"] for r in runs if r["lift"] is not None]
    return {"candidate": name, "mean_lift": float(np.mean(lifts)) if lifts else None, "runs": runs}


def tune(fold: str, data_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Every candidate on ``fold``; the winner is the best mean lift (ties: the earlier one)."""
    started = time.monotonic()
    suites = [prepare_suite(name, data_dir, progress=progress) for name in FOLDS[fold]]
    scored = [asyncio.run(score_candidate(n, suites, progress=progress)) for n in CANDIDATES]
    best = max(
        range(len(scored)),
        key=lambda i: (
            -np.inf if scored[i]["mean_lift"] is None else scored[i]["mean_lift"],
            -i,
        ),
    )
    return {
        "fold": fold,
        "suites": list(FOLDS[fold]),
        "serves": sorted(s for s, f in SERVED_BY.items() if f == fold),
        "objective": "mean over suites and runs of last-half APGR − static prior's",
        "runs": [
            {"feedback": r.feedback, "explore_fraction": r.explore_fraction} for r in TUNING_RUNS
        ],
        "candidates": scored,
        "winner": scored[best]["candidate"],
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.online.tune``."""
    from recorded_data import resolve_data_dir

    parser = argparse.ArgumentParser(prog="python -m bench.online.tune", description=__doc__)
    parser.add_argument("--fold", choices=sorted(FOLDS), required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="results folder (default: a temporary one)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    doc = tune(args.fold, resolve_data_dir(args.data_dir), progress=not args.no_progress)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="adaptive-online-tune-"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"online-tuning-{args.fold}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    for cand in doc["candidates"]:
        lift = cand["mean_lift"]
        print(f"{cand['candidate']:>14}: mean lift {'—' if lift is None else f'{lift:+.4f}'}")
    print(f"winner on fold {args.fold}: {doc['winner']}; written to {path.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
