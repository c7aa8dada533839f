"""``adaptive-proxy bench`` as a user runs it: a missing bench extra is one line, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Loaded by the child interpreter only (``sitecustomize`` on its PYTHONPATH): the bench extra's
# scikit-learn and threadpoolctl look uninstalled there.
HIDE_BENCH_EXTRA = """
import sys
from importlib.abc import MetaPathFinder


class HideBenchExtra(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("sklearn", "threadpoolctl"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, HideBenchExtra())
"""


def test_without_the_bench_extra_it_says_what_to_install(data_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_BENCH_EXTRA, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy.cli",
            "bench",
            "--suite",
            "game24-gpt4-standard",
            "--quick",
            "--no-live",
            "--no-progress",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)])},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bench needs the bench extra (no module ")
    assert "pip install 'adaptive-proxy[bench]'" in lines[0]
