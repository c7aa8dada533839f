"""``python -m bench.online.tune``: choose the learner's settings leave-one-suite-out.

Runs every candidate of :data:`bench.online.choice.CANDIDATES` (or those named) on every suite of
:data:`bench.online.choice.TUNING_SUITES`, with both feedback settings the issue measures
(``arm_rewards``; ``none`` with 5% exploration), and records each run's last-half APGR lift over
the static prior. For each suite, the winner is the candidate with the best mean lift over the
runs of the *other* suites (ties: the earlier candidate). Writes ``online-tuning.json`` into
``--out`` (default: a new temporary folder) with every figure and each suite's winner;
:data:`bench.online.choice.CHOSEN` is where the winners are recorded for the CLI.
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

from bench.online.choice import CANDIDATES, TUNING_SUITES
from bench.online.metrics import rounded
from bench.online.prepare import ONLINE_SUITES, prepare_suite
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


def choose(
    scored: Sequence[dict[str, Any]],
    suites: Sequence[str],
    report_on: Sequence[str] = (),
) -> dict[str, Any]:
    """Per suite tuned on (and per suite of ``report_on``), the candidate with the best mean lift
    on the runs of the *other* tuned suites."""
    chosen: dict[str, Any] = {}
    for held_out in [*suites, *(s for s in report_on if s not in suites)]:
        means = []
        for cand in scored:
            lifts = [
                r["lift"] for r in cand["runs"] if r["suite"] != held_out and r["lift"] is not None
            ]
            means.append(float(np.mean(lifts)) if lifts else -np.inf)
        best = max(range(len(scored)), key=lambda i: (means[i], -i))
        chosen[held_out] = {
            "winner": scored[best]["candidate"],
            "chosen_on": [s for s in suites if s != held_out],
            "mean_lift_on_others": {
                c["candidate"]: None if not np.isfinite(m) else m
                for c, m in zip(scored, means, strict=True)
            },
        }
    return chosen


def tune(
    data_dir: Path,
    *,
    candidates: Sequence[str] = tuple(CANDIDATES),
    suites: Sequence[str] = TUNING_SUITES,
    progress: bool = True,
) -> dict[str, Any]:
    """Every candidate on every suite; each suite's winner chosen on the others."""
    started = time.monotonic()
    prepared = [prepare_suite(name, data_dir, progress=progress) for name in suites]
    scored = [asyncio.run(score_candidate(n, prepared, progress=progress)) for n in candidates]
    return {
        "scheme": "leave-one-suite-out",
        "suites": list(suites),
        "objective": "mean over the other suites and both runs of last-half APGR − static prior's",
        "runs": [
            {"feedback": r.feedback, "explore_fraction": r.explore_fraction} for r in TUNING_RUNS
        ],
        "candidates": scored,
        "chosen": choose(scored, suites, ONLINE_SUITES),
        "seconds": round(time.monotonic() - started, 1),
    }


def _fmt(lift: float | None) -> str:
    return "—" if lift is None else f"{lift:+.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.online.tune``."""
    from recorded_data import resolve_data_dir

    parser = argparse.ArgumentParser(prog="python -m bench.online.tune", description=__doc__)
    parser.add_argument(
        "--candidate",
        action="append",
        choices=list(CANDIDATES),
        help="candidate to try (repeatable; default all)",
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=list(ONLINE_SUITES),
        help=f"suite to tune on (repeatable; default {', '.join(TUNING_SUITES)})",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="results folder (default: a temporary one)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    doc = tune(
        resolve_data_dir(args.data_dir),
        candidates=args.candidate or tuple(CANDIDATES),
        suites=args.suite or TUNING_SUITES,
        progress=not args.no_progress,
    )
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="adaptive-online-tune-"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "online-tuning.json"
    path.write_text(json.dumps(rounded(doc), indent=1) + "\n", encoding="utf-8")
    for cand in doc["candidates"]:
        lifts = ", ".join(f"{r['suite']}/{r['feedback']} {_fmt(r['lift'])}" for r in cand["runs"])
        print(f"{cand['candidate']:>14}: {lifts}")
    for suite, pick in doc["chosen"].items():
        print(f"{suite}: {pick['winner']} (chosen on {', '.join(pick['chosen_on'])})")
    print(f"written to {path.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
