"""``adaptive-proxy bench``: the command line of the cost/quality benchmark."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from bench.suites import SUITES

DEFAULT_OUT = Path("bench") / "results"
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
        choices=list(SUITES),
        metavar="NAME",
        help=f"suite to run (repeatable; default all: {', '.join(SUITES)})",
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
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results folder")
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
        help="bootstrap resamples (default 200, 50 with --quick)",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Handler: run the benchmark; 0 on success."""
    from bench.runner import BenchOptions, run_bench
    from recorded_data import DataNotFoundError, resolve_data_dir

    try:
        data_dir = resolve_data_dir(args.data_dir)
    except DataNotFoundError as exc:
        print(f"error: {exc}")
        return 2
    opts = BenchOptions(
        data_dir=data_dir,
        out_dir=Path(args.out),
        suites=args.suite or list(SUITES),
        quick=args.quick,
        predictor=args.predictor,
        live=not args.no_live,
        n_boot=args.bootstrap or (50 if args.quick else 200),
        concurrency=args.concurrency,
        progress=not args.no_progress,
    )
    asyncio.run(run_bench(opts))
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench`` to ``adaptive-proxy``'s sub-commands (handler in ``func``)."""
    parser = subparsers.add_parser(
        "bench", help="run the cost/quality benchmark", description=DESCRIPTION
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
