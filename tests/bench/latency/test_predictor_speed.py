"""``python -m bench.latency.predictor_speed``: where its prompts come from, and failing loudly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.latency.predictor_speed import PromptsError, main, recorded_prompts


def test_missing_data_dir_fails_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["--data-dir", str(missing), "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == ""  # no figures at all, synthetic or otherwise
    assert str(missing) in out.err
    assert "--data-dir" in out.err


def test_data_dir_without_records_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "routellm").mkdir()
    assert main(["--data-dir", str(tmp_path), "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert "error:" in out.err


def test_environment_variable_is_the_second_place_looked(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(PromptsError, match=r"\$ADAPTIVE_DATA_DIR") as caught:
        recorded_prompts(None, env={"ADAPTIVE_DATA_DIR": str(missing)})
    assert str(missing) in str(caught.value)


def test_recorded_prompts_come_from_the_resolved_folder(data_dir: Path) -> None:
    prompts, root = recorded_prompts(str(data_dir))
    assert root == data_dir.resolve()
    assert len(prompts) > 1000
    assert all(m["role"] in {"system", "user", "assistant"} for m in prompts[0])


def test_figures_name_the_recorded_source(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data-dir", str(data_dir), "--n-single", "2", "--n-batched", "4", "--json"]
    assert main(argv) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["prompts"] == f"recorded prompts from {data_dir.resolve()}"


def test_synthetic_prompts_only_when_asked_and_labelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--synthetic", "--n-single", "2", "--n-batched", "4", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["prompts"].startswith("synthetic")
