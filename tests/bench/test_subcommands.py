"""``adaptive-proxy bench BENCHMARK …``: each named benchmark gets its module's own flags."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import run as run_cost_quality
from bench.docs.run import DOC_FILES, RESULTS
from bench.subcommands import BENCHMARKS
from proxy.cli import build_parser

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_help_is_the_modules_own(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["bench", name, "--help"])
    with pytest.raises(SystemExit) as exited:
        args.func(args)
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: adaptive-proxy bench {name} ")


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_help_through_python_m_names_the_module(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = BENCHMARKS[name].module
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(module).main(["--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {module.removesuffix('.run')} ")


def test_without_a_name_bench_is_the_cost_quality_benchmark() -> None:
    args = build_parser().parse_args(["bench", "--suite", "gsm8k-ladder", "--quick"])
    assert args.func is run_cost_quality
    assert (args.suite, args.quick, args.benchmark) == (["gsm8k-ladder"], True, None)


def test_flags_of_bench_before_a_name_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["bench", "--quick", "latency"])
    assert args.func(args) == 2
    assert "--quick belong to the cost/quality benchmark" in capsys.readouterr().err


def test_docs_runs_with_its_flags_as_a_user_types_them(tmp_path: Path) -> None:
    for rel in DOC_FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / rel, tmp_path / rel)
    (tmp_path / RESULTS).mkdir(parents=True)
    for path in (REPO_ROOT / RESULTS).glob("*.json"):
        shutil.copy(path, tmp_path / RESULTS / path.name)
    report = tmp_path / RESULTS / "REPORT.md"
    report.write_text("stale\n", encoding="utf-8")

    def bench_docs(*flags: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "proxy.cli", "bench", "docs", "--root", str(tmp_path)]
        return subprocess.run(
            [*command, *flags],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    checked = bench_docs("--check")
    assert checked.returncode == 1, checked.stderr
    assert f"{RESULTS / 'REPORT.md'}: the file differs from what the results give" in (
        checked.stdout
    )
    assert report.read_text(encoding="utf-8") == "stale\n"  # --check reached it: nothing written
    rendered = bench_docs()
    assert rendered.returncode == 0, rendered.stderr
    assert f"updated {RESULTS / 'REPORT.md'}" in rendered.stdout
    assert report.read_text(encoding="utf-8") == (REPO_ROOT / RESULTS / "REPORT.md").read_text(
        encoding="utf-8"
    )
