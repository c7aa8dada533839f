"""Run ``adaptive-proxy`` as a user does: a subprocess of this checkout's ``proxy.cli``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli_command(*args: str) -> list[str]:
    """The command line of ``adaptive-proxy ARGS`` with this interpreter."""
    return [sys.executable, "-m", "proxy.cli", *args]


def cli_env() -> dict[str, str]:
    """The environment, importing this checkout, with unbuffered output (lines as they happen)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def run_cli(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``adaptive-proxy ARGS`` to its end; its status, stdout and stderr."""
    return subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout_s,
        check=False,
    )
