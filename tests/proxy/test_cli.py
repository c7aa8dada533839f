"""``adaptive-proxy`` as a pipeline stage: a reader that goes away ends it quietly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.cli import ROOT, cli_command, cli_env


def _with_reader_gone(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``adaptive-proxy ARGS`` with stdout a pipe whose reader has closed it (``| head``)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # before the command writes: every write of it meets a closed pipe
    try:
        return subprocess.run(
            cli_command(*args),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ("check", "--config", str(ROOT / "config.example.yaml")),
        ("replay-upstream", "--port", "0"),
    ],
    ids=["check", "replay-upstream"],
)
def test_a_closed_stdout_ends_a_command_quietly(args: tuple[str, ...], data_dir: Path) -> None:
    if args[0] == "replay-upstream":
        args += ("--data-dir", str(data_dir))
    result = _with_reader_gone(*args)
    assert result.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert result.returncode == 141  # 128 + SIGPIPE: what `yes | head` leaves
