"""The demo end to end: real servers, the embedded policy, the OpenAI SDK, what it prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.demo import run_demo


async def test_the_demo_shows_every_routed_prompt_and_each_best_of_k_answer(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_demo(data_dir=data_dir, config_path=None) == 0
    out = capsys.readouterr().out
    assert "all expensive (GPT-4)" in out and "adaptive (" in out
    best_of_k = out.split("policy 'auto-best-of-k'")[1].strip().splitlines()[2:]
    assert len(best_of_k) == 3
    for line in best_of_k:
        # Each line names the final answer the vote picked (a number for GSM8K, never a blank
        # or a raw last line of the solution), then right/wrong against the recorded truth.
        match = re.search(r"n=\d+\s+→ (-?[\d.,]+)\s+(right|wrong \(truth .+\))$", line)
        assert match is not None, line
