"""``adaptive-proxy replay-upstream`` as a user starts it: it says where it listens."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import openai

from tests.cli import run_cli


def test_replay_upstream_prints_its_address_and_serves_there(data_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [
        sys.executable,
        "-m",
        "proxy.cli",
        "replay-upstream",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.search(r"on (http://127\.0\.0\.1:(\d+)/v1)", line)
            assert match, line
            assert int(match.group(2)) > 0  # the real port, not the 0 it was asked for
            with openai.OpenAI(base_url=match.group(1), api_key="x", max_retries=0) as client:
                models = {m.id for m in client.models.list()}
            assert "gpt-4-1106-preview" in models and "humaneval-codegen16b" in models
            # The line counts every model it serves, the multi-sample suites' too.
            assert f"for {len(models)} models" in line, line
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert process.returncode == 0


def test_replay_upstream_on_a_busy_port_says_so_in_one_line(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("replay-upstream", "--port", str(port), "--data-dir", str(data_dir))
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()  # one line, no traceback
    assert line.startswith(f"adaptive-proxy: cannot listen on 127.0.0.1:{port}: "), line
    assert "address already in use" in line.lower(), line
    assert result.stdout == ""  # no "serving on" line for a port it does not serve
