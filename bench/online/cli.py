"""``python -m bench.online``: a deployment lived on a recorded suite, the real learner in it.

Writes ``online-<suite>.json`` and its learning curve ``online-<suite>.png`` (suffixed for other
feedback or exploration settings, :func:`bench.online.result.result_name`) into ``--out``
(default: a new temporary folder, printed; ``--out bench/results`` writes the committed copy).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.online.choice import CANDIDATES, learner_for
from bench.online.prepare import ONLINE_SUITES, ROUTELLM_SUITES, prepare_suite
from bench.online.result import build_result, result_name, write_result
from bench.online.simulate import FEEDBACK_MODES, OnlineSettings, simulate
from bench.online.suite import OnlineSuite

DESCRIPTION = (
    "Stream a recorded suite's prompts once, in a fixed shuffled order, as a deployment's "
    "traffic: route with the head in force, log outcomes to a real store, label as "
    "--feedback and --explore say, refit and promote with the real learner; report APGR per "
    "window against the static prior and the out-of-fold figure."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The online benchmark's options."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--suite", choices=ONLINE_SUITES, help="a recorded routing suite")
    source.add_argument(
        "--suite-file",
        type=Path,
        help="a prepared suite (.npz written by bench.online.suite.OnlineSuite.save)",
    )
    parser.add_argument(
        "--feedback",
        choices=FEEDBACK_MODES,
        default="arm_rewards",
        help="explicit labels: an evaluator's reward of both arms (default), the reward of "
        "the answer given, or none",
    )
    parser.add_argument(
        "--explore",
        type=float,
        default=0.0,
        metavar="F",
        help="share of requests that also run the other arm, labelled from both (default 0)",
    )
    parser.add_argument(
        "--expensive-share",
        type=float,
        default=0.5,
        help="share of requests the route sends to the expensive arm (default 0.5)",
    )
    parser.add_argument("--window", type=int, default=200, help="requests per window (200)")
    parser.add_argument("--seed", type=int, default=0, help="the stream order's seed (0)")
    parser.add_argument(
        "--learner",
        choices=sorted(CANDIDATES),
        default=None,
        help="learner settings by name (default: those chosen on the other suites)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="recorded data (default: $ADAPTIVE_DATA_DIR, else the bundled copy)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="results folder (default: a new temporary folder; --out bench/results writes "
        "the committed copy)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="stream through a real proxy (replay upstream, OpenAI SDK client, the "
        "adaptive-proxy learn process beside it) instead of the in-process simulation; writes "
        "online-<suite>[-…]-live.json (bench.online.live)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="with --live: stream only the first N prompts of the shuffled order",
    )
    parser.add_argument("--no-progress", action="store_true")


def _load_suite(args: argparse.Namespace) -> OnlineSuite | None:
    if args.suite_file is not None:
        return OnlineSuite.load(args.suite_file)
    from recorded_data import DataNotFoundError, resolve_data_dir

    try:
        data_dir = resolve_data_dir(args.data_dir)
    except DataNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    return prepare_suite(args.suite, data_dir, progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    """Run one online benchmark; 0 on success, 2 on bad input or missing data."""
    try:
        settings = OnlineSettings(
            feedback=args.feedback,
            explore_fraction=args.explore,
            expensive_share=args.expensive_share,
            window=args.window,
            seed=args.seed,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.live and args.suite is not None and args.suite not in ROUTELLM_SUITES:
        # Said before the suite is prepared (its embeddings can take minutes).
        print(
            f"error: --live streams the RouteLLM suites' prompts through the replay upstream "
            f"({', '.join(ROUTELLM_SUITES)}); {args.suite!r} is not one of them",
            file=sys.stderr,
        )
        return 2
    suite = _load_suite(args)
    if suite is None:
        return 2
    learner_settings, choice = learner_for(suite.name, args.learner)
    learner_settings = _with_dim(learner_settings, suite.embedding_dim)
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="adaptive-online-"))
    if args.live:
        return _run_live(args, suite, settings, learner_settings, choice, out_dir)
    if args.limit is not None:
        print("error: --limit applies to --live runs only", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="adaptive-online-store-") as work:
        trace = asyncio.run(
            simulate(
                suite,
                settings,
                learner_settings,
                workdir=Path(work),
                progress=not args.no_progress,
            )
        )
    doc = build_result(suite, trace, settings, learner_settings, learner_choice=choice)
    path, png = write_result(out_dir, result_name(suite.name, settings), doc)
    print(_summary(doc))
    print(f"results written to {out_dir.resolve()} ({path.name}, {png.name})")
    return 0


def _run_live(
    args: argparse.Namespace,
    suite: OnlineSuite,
    settings: OnlineSettings,
    learner_settings: Any,
    choice: dict[str, Any],
    out_dir: Path,
) -> int:
    from bench.online.live import EXPLORE_NOTE, LiveOnlineOptions, run_live_online
    from bench.online.live_result import live_result, process_learner_settings, simulate_beside
    from recorded_data import DataNotFoundError, resolve_data_dir

    try:
        data_dir = resolve_data_dir(args.data_dir)
    except DataNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print("error: --limit must be positive", file=sys.stderr)
        return 2
    options = LiveOnlineOptions(limit=args.limit)
    if settings.explore_fraction > 0:
        print(f"warning: --live --explore: {EXPLORE_NOTE}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="adaptive-online-live-") as work:
        try:
            live = asyncio.run(
                run_live_online(
                    suite,
                    settings,
                    learner_settings,
                    data_dir=data_dir,
                    workdir=Path(work),
                    options=options,
                    progress=not args.no_progress,
                )
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    doc = live_result(live, settings, learner_settings, choice, options)
    # The simulator on the same stream with the learner process's settings (its promotion rule
    # is production's, not the tuned candidate's): the rest of the gap is the live loop's own.
    process = process_learner_settings(live.info["config_yaml"], suite.embedding_dim)
    with tempfile.TemporaryDirectory(prefix="adaptive-online-store-") as work:
        doc["live"]["simulator_same_learner"] = asyncio.run(
            simulate_beside(live, settings, process, workdir=Path(work))
        )
    path, png = write_result(out_dir, f"{result_name(suite.name, settings)}-live", doc)
    print(_summary(doc))
    beside = doc["live"]["simulator_same_learner"]
    print(
        f"  simulator on the same stream with the learner process's settings: last-half APGR "
        f"{_fmt(beside['final_half_apgr'])}, {beside['promotions']} promotions"
    )
    print(f"results written to {out_dir.resolve()} ({path.name}, {png.name})")
    return 0


def run_suites(
    suites: Sequence[str] | None,
    *,
    suite_files: Sequence[Path] = (),
    feedback: str,
    explore: float,
    data_dir: str | None,
    out: str | None,
    progress: bool,
    live: bool = False,
    limit: int | None = None,
) -> int:
    """``adaptive-proxy bench --online``: :func:`run` on each suite in turn, then each prepared
    suite file (no suite and no file: every one of :data:`ONLINE_SUITES`), all results in one
    folder; 2 on a suite it cannot stream."""
    from bench.multisample.free_prior import SUITES as MULTISAMPLE_SUITES

    names = list(suites or ([] if suite_files else ONLINE_SUITES))
    multi = [n for n in names if n in MULTISAMPLE_SUITES]
    names = [n for n in names if n not in MULTISAMPLE_SUITES]
    unknown = [n for n in names if n not in ONLINE_SUITES]
    if unknown:
        print(
            f"error: --online streams routing suites ({', '.join(ONLINE_SUITES)}) and "
            f"multi-sample suites ({', '.join(MULTISAMPLE_SUITES)}), not {', '.join(unknown)}",
            file=sys.stderr,
        )
        return 2
    folder = out or tempfile.mkdtemp(prefix="adaptive-online-")
    if multi:
        # Multi-sample suites learn from sequential rounds' free labels only: K-fold by prompt
        # (bench.multisample.free_prior); --feedback and --explore do not apply to them.
        from bench.multisample.free_prior import main as free_prior_main

        args = [a for n in multi for a in ("--suite", n)] + ["--out", folder]
        args += ["--data-dir", data_dir] if data_dir else []
        code = free_prior_main([*args, *([] if progress else ["--no-progress"])])
        if code:
            return code
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    common = ["--feedback", feedback, "--explore", str(explore), "--out", folder]
    common += ["--data-dir", data_dir] if data_dir else []
    common += [] if progress else ["--no-progress"]
    common += ["--live"] if live else []
    common += ["--limit", str(limit)] if limit is not None else []
    sources = [["--suite", n] for n in names] + [["--suite-file", str(f)] for f in suite_files]
    for source in sources:
        code = run(parser.parse_args([*source, *common]))
        if code:
            return code
    return 0


def _with_dim(settings: Any, dim: int) -> Any:
    from dataclasses import replace

    return settings if settings.embedding_dim == dim else replace(settings, embedding_dim=dim)


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def _summary(doc: dict[str, Any]) -> str:
    lines = [
        f"{doc['suite']}: last-half APGR {_fmt(doc['final_half_apgr'])} (static prior "
        f"{_fmt(doc['static_apgr'])}, out-of-fold {_fmt(doc['cv_apgr'])}); "
        f"{doc['labels']} labels, {doc['promotions']} promotions, exploration "
        f"{100 * doc['explore_cost_share']:.2f}% of cost"
    ]
    for name, goal in doc["goals"].items():
        if "margin" in goal and not goal["applies"]:
            lines.append(f"  goal {name}: does not apply")
            continue
        state = {True: "met", False: "NOT met", None: "not measurable"}[goal["met"]]
        margin = goal.get("margin")
        extra = "" if margin is None else f" (margin {margin:+.3f})"
        lines.append(f"  goal {name}: {state}{extra}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.online``."""
    parser = argparse.ArgumentParser(prog="python -m bench.online", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
