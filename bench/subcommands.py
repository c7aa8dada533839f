"""``adaptive-proxy bench BENCHMARK [flags]``: the benchmarks with a command line of their own.

Each runs its ``python -m …`` module's ``main`` with the flags that follow its name, unchanged
(``--help`` included), so both spellings take the same flags and print the same figures.
``adaptive-proxy bench [--suite …]`` without a name stays the cost/quality benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from bench.extra import or_missing_extra


class BenchmarkMain(Protocol):
    """A benchmark module's ``main``: its flags, and the name ``--help`` shows it under."""

    def __call__(self, argv: Sequence[str], *, prog: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Benchmark:
    """One benchmark: the module whose ``main(argv)`` runs it, and a line of help."""

    module: str
    help: str


#: Sub-command name → benchmark (the module is imported only when its sub-command runs).
BENCHMARKS: dict[str, Benchmark] = {
    "latency": Benchmark(
        "bench.latency.run", "proxy overhead: added latency, throughput, CPU, RSS, loop stalls"
    ),
    "cascade": Benchmark(
        "bench.cascade.run", "offline cascades vs the input-only route on recorded GSM8K answers"
    ),
    "evidence-latency": Benchmark(
        "bench.cascade.evidence_latency",
        "wall time sequential rounds and cascades add (live proxy)",
    ),
    "predictor-speed": Benchmark(
        "bench.latency.predictor_speed", "the ONNX predictor's latency, throughput and memory"
    ),
    "docs": Benchmark(
        "bench.docs.run", "render the documentation's figures and REPORT.md from the results"
    ),
}


def run_benchmark(benchmark: Benchmark, argv: Sequence[str], prog: str) -> int:
    """``benchmark``'s ``main(argv, prog=prog)``; 2 with one line when the bench extra is missing.

    ``prog`` is the command the user typed (``adaptive-proxy bench latency``), for its usage line.
    """

    def run() -> int:
        main = cast(BenchmarkMain, importlib.import_module(benchmark.module).main)
        return main(list(argv), prog=prog)

    return or_missing_extra(run)


def add_benchmarks(bench: argparse.ArgumentParser) -> None:
    """Add the named benchmarks to the ``bench`` parser, as an optional positional name.

    Its flags are handed on untouched: the sub-parser reads no option of its own (no ``-h``;
    no option prefix), so ``--help`` and every flag reach the module's own parser.
    """
    names = bench.add_subparsers(
        dest="benchmark",
        metavar="BENCHMARK",
        help="run one benchmark instead (flags after it are its own; BENCHMARK --help lists them)",
    )
    # What ``bench`` alone parses to: any other value was given on the command line.
    defaults = {
        key: value
        for key, value in vars(bench.parse_args([])).items()
        if key not in ("func", "benchmark")
    }
    for name, benchmark in BENCHMARKS.items():
        parser = names.add_parser(
            name,
            help=f"{benchmark.help} (python -m {benchmark.module.removesuffix('.run')})",
            add_help=False,
            prefix_chars="\0",
        )
        parser.add_argument("argv", nargs="*")
        parser.set_defaults(func=_handler(defaults, benchmark))


def _handler(
    defaults: dict[str, object], benchmark: Benchmark
) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        # ``bench --quick latency`` would drop --quick silently: flags go after the name.
        given = [key for key, value in defaults.items() if getattr(args, key, value) != value]
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            print(
                f"adaptive-proxy bench: {flags} belong to the cost/quality benchmark; "
                f"put the flags of {args.benchmark!r} after its name",
                file=sys.stderr,
            )
            return 2
        return run_benchmark(benchmark, args.argv, f"adaptive-proxy bench {args.benchmark}")

    return handle
