"""``adaptive-proxy bench``: the command line of the cost/quality benchmark."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.extra import or_missing_extra
from bench.routing.suites import SUITES
from bench.subcommands import add_benchmarks
from recorded_data.multisample import MULTISAMPLE_SUITES

COMMITTED_OUT = Path("bench") / "results"
LADDER_SUITE = "alpaca-eval-ladder"
ALL_SUITES = (*MULTISAMPLE_SUITES, LADDER_SUITE, *SUITES)
DESCRIPTION = (
    "Cost/quality benchmark on real recorded model outcomes, end to end through the "
    "live proxy: adaptive policies vs random, uniform and oracle allocation, with "
    "out-of-fold and leave-one-suite-out predictors."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options."""
    parser.add_argument(
        "--suite",
        action="extend",
        nargs="+",
        choices=list(ALL_SUITES),
        metavar="NAME",
        help=f"suite to run (repeatable; default all: {', '.join(ALL_SUITES)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every suite on a seeded subsample (CI; under 2 minutes)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="recorded data (default: $ADAPTIVE_DATA_DIR, else the bundled copy)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="results folder (default: a new temporary folder, so the committed "
        f"results change only with --out {COMMITTED_OUT})",
    )
    parser.add_argument(
        "--predictor",
        choices=("auto", "onnx", "features"),
        default="auto",
        help="out-of-fold predictor: the shipped ONNX one, the text-feature "
        "stand-in, or the ONNX one when available (default)",
    )
    parser.add_argument(
        "--no-live", action="store_true", help="skip the live proxy runs (offline figures only)"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        help="bootstrap resamples (default 200, 50 with --quick; multi-sample "
        "suites 1000, 200 with --quick)",
    )
    parser.add_argument(
        "--rederive",
        action="store_true",
        help="run no suite: recompute, from the results and per-prompt records already in "
        "--out, the figures they alone determine (random baselines, matched quality), the "
        "routing plots and REPORT.md",
    )
    parser.add_argument(
        "--docs",
        action="store_true",
        help="run no suite: render the documentation's benchmark figures and REPORT.md from the "
        f"committed {COMMITTED_OUT}/*.json (python -m bench.docs; --check there compares only)",
    )
    online = parser.add_argument_group(
        "online", "a deployment lived on the suite: the learner refits as labels arrive"
    )
    online.add_argument(
        "--online",
        action="store_true",
        help="stream each --suite's prompts once as live traffic with the real outcome log and "
        "learner (python -m bench.online); writes online-<suite>.json and .png; multi-sample "
        "suites: a prior learned from sequential rounds' free labels, 5-fold by prompt "
        "(python -m bench.multisample.free_prior), online-multisample.json",
    )
    online.add_argument(
        "--suite-file",
        action="append",
        type=Path,
        metavar="NPZ",
        help="with --online: also stream a prepared suite (bench.online.suite.OnlineSuite.save), "
        "e.g. one built from your own recorded traffic (repeatable)",
    )
    online.add_argument(
        "--explore",
        type=float,
        default=0.0,
        metavar="F",
        help="with --online: share of requests that also run the other arm (default 0)",
    )
    online.add_argument(
        "--feedback",
        choices=("arm_rewards", "reward", "none"),
        default="arm_rewards",
        help="with --online: explicit labels: both arms' rewards (default), the answer's, none",
    )
    online.add_argument(
        "--live",
        action="store_true",
        help="with --online: stream through a real proxy and the adaptive-proxy learn process "
        "(replay upstream, OpenAI SDK client); writes online-<suite>-live.json",
    )
    online.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="with --online --live: stream only the first N prompts of the shuffled order",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Handler: run the benchmark; 0 on success, 2 when the data or the bench extra is missing."""
    complaint = _online_flags_alone(args)
    if complaint is not None:
        print(f"error: {complaint}", file=sys.stderr)
        return 2
    return or_missing_extra(lambda: _run(args, started_s=time.monotonic()))


def _run(args: argparse.Namespace, *, started_s: float) -> int:
    if args.online:
        from bench.online.cli import run_suites

        return run_suites(
            args.suite,
            suite_files=args.suite_file or (),
            feedback=args.feedback,
            explore=args.explore,
            data_dir=args.data_dir,
            out=args.out,
            progress=not args.no_progress,
            live=args.live,
            limit=args.limit,
        )
    if args.docs:
        from bench.docs.run import main as docs_main

        return docs_main([])
    from bench.routing.runner import BenchOptions, run_bench
    from recorded_data import DataNotFoundError, resolve_data_dir

    if args.rederive:
        return _rederive(args.out)
    try:
        data_dir = resolve_data_dir(args.data_dir)
    except DataNotFoundError as exc:
        print(f"error: {exc}")
        return 2
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="adaptive-bench-"))
    names = args.suite or list(ALL_SUITES)
    routed = [n for n in names if n in SUITES]
    multi = [n for n in names if n in MULTISAMPLE_SUITES]
    multi_docs: dict[str, dict[str, Any]] = {}
    routed_results: dict[str, dict[str, Any]] = {}
    if multi:
        from bench.multisample.run import run_multisample_suites

        n_boot = args.bootstrap or (200 if args.quick else 1000)
        multi_docs = asyncio.run(
            run_multisample_suites(
                data_dir,
                out_dir,
                multi,
                quick=args.quick,
                n_boot=n_boot,
                live=not args.no_live,
                progress=not args.no_progress,
            )
        )
    if LADDER_SUITE in names:
        from bench.routing.alpaca_ladder import write_alpaca_ladder

        print(f"suite {LADDER_SUITE} …")
        write_alpaca_ladder(data_dir, out_dir, quick=args.quick, progress=not args.no_progress)
    if routed:
        opts = BenchOptions(
            data_dir=data_dir,
            out_dir=out_dir,
            suites=routed,
            quick=args.quick,
            predictor=args.predictor,
            live=not args.no_live,
            n_boot=args.bootstrap or (50 if args.quick else 200),
            concurrency=args.concurrency,
            progress=not args.no_progress,
        )
        routed_results = asyncio.run(run_bench(opts))
        from bench.routing.matched_quality import add_matched_quality

        add_matched_quality(out_dir)
    from bench.report import summary_table, write_report

    report = write_report(out_dir)
    # The headlines of this run last, where they stay on screen; REPORT.md has the rest.
    if multi_docs:
        from bench.multisample.report import headline_table

        print("\nsamples saved at equal quality versus uniform best-of-k:")
        print("\n".join(headline_table(multi_docs)))
    if routed_results:
        print("\nrouting suites:")
        print(summary_table(routed_results))
    print(f"\nbench finished in {time.monotonic() - started_s:.0f} s")
    print(f"results written to {out_dir.resolve()} (report: {report.resolve()})")
    if out_dir.resolve() == COMMITTED_OUT.resolve():
        print("the documentation's figures come from these results: adaptive-proxy bench --docs")
    return 0


def _rederive(out: str | None) -> int:
    from bench.routing.rederive import rederive

    if out is None or not Path(out).is_dir():
        print(f"error: --rederive needs --out naming an existing results folder (got {out!r})")
        return 2
    done = rederive(Path(out))
    print(f"rederived {', '.join(done) or 'no routing suite'} in {Path(out).resolve()}")
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench`` to ``adaptive-proxy``'s sub-commands (handler in ``func``)."""
    parser = subparsers.add_parser(
        "bench", help="run the cost/quality benchmark", description=DESCRIPTION
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    # ``bench latency …`` and the other named benchmarks (after every option of ``bench``).
    add_benchmarks(parser)


def _online_flags_alone(args: argparse.Namespace) -> str | None:
    """The complaint when an ``--online`` option is given without ``--online``."""
    if args.online:
        return None
    if args.explore != 0.0 or args.feedback != "arm_rewards" or args.suite_file:
        return "--explore, --feedback and --suite-file apply to --online runs only"
    if args.live or args.limit is not None:
        return "--live and --limit apply to --online runs only"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
