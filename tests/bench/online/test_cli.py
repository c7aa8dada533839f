"""``python -m bench.online`` as a user runs it: results in a new temporary folder by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.bench.online.synthetic import synthetic_suite

REPO_ROOT = Path(__file__).resolve().parents[3]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.online", *args, "--no-progress"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(tmp_path / "tmp")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_by_default_it_writes_into_a_new_temporary_folder(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    suite_file = tmp_path / "mine.npz"
    synthetic_suite(500, name="mine").save(suite_file)
    result = _cli(tmp_path, "--suite-file", str(suite_file), "--explore", "0.05")
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("results written to ")
    out = Path(last.removeprefix("results written to ").split(" (")[0])
    assert out.parent == (tmp_path / "tmp").resolve()
    assert sorted(p.name for p in out.iterdir()) == [
        "online-mine-arm_rewards-explore0.05.json",
        "online-mine-arm_rewards-explore0.05.png",
    ]
    doc = json.loads((out / "online-mine-arm_rewards-explore0.05.json").read_text())
    assert doc["suite"] == "mine" and doc["n_prompts"] == 500
    assert doc["settings"]["explore_fraction"] == 0.05
    assert "last-half APGR" in result.stdout
    # The outcome store lived in a temporary folder of its own, removed afterwards.
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == [out.name]


def test_a_bad_setting_is_one_line(tmp_path: Path) -> None:
    suite_file = tmp_path / "mine.npz"
    synthetic_suite(20, name="mine").save(suite_file)
    (tmp_path / "tmp").mkdir()
    result = _cli(tmp_path, "--suite-file", str(suite_file), "--explore", "1.5")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: explore_fraction must lie in [0, 1]"
