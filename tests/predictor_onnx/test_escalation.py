"""Training of the escalation model on the recorded GSM8K answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from predictor_onnx.cli import main as predictor_main
from predictor_onnx.escalation import (
    CASCADES,
    cascade_examples,
    fit_logistic,
    oof_gain,
    read_prior_jsonl,
    train_escalation,
)
from predictor_onnx.escalation_cli import escalation_out_dir
from recorded_data.records import load_gsm8k


def test_fit_logistic_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 2))
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.5 * x[:, 1] + 0.3)))).astype(
        float
    )
    w, b = fit_logistic(x, y, l2=1e-6)
    assert w == pytest.approx([1.5, -0.5], abs=0.06)
    assert b == pytest.approx(0.3, abs=0.05)


def test_examples_of_the_recorded_mixtral_cascade(data_dir: Path) -> None:
    spec = CASCADES["mixtral-gpt4"]
    examples = cascade_examples(load_gsm8k(data_dir), spec)
    assert len(examples.prompt_ids) == 1307
    # Recorded accuracies of the data README (contaminated prompts dropped).
    assert examples.cheap_reward.mean() == pytest.approx(0.637, abs=0.005)
    assert examples.expensive_reward.mean() == pytest.approx(0.858, abs=0.005)
    agree = examples.agree
    # When Mixtral and the 6B sample agree, Mixtral is right far more often than overall.
    assert examples.cheap_reward[agree].mean() > 0.85 > examples.cheap_reward[~agree].mean()


def test_out_of_fold_gain_ranks_where_escalation_helps(data_dir: Path) -> None:
    examples = cascade_examples(load_gsm8k(data_dir), CASCADES["gpt3-175b"])
    gain = oof_gain(examples)
    helps = examples.expensive_reward > examples.cheap_reward
    assert gain[helps].mean() > gain[~helps].mean() + 0.1


def test_prior_outputs_come_from_the_jsonl(data_dir: Path, tmp_path: Path) -> None:
    records = load_gsm8k(data_dir)[:50]
    prior_file = tmp_path / "prior.jsonl"
    prior_file.write_text(
        "".join(
            json.dumps({"prompt_id": r.prompt_id, "predictions": {"cv": {"gain": i / 100}}}) + "\n"
            for i, r in enumerate(records)
        )
    )
    prior = read_prior_jsonl([prior_file])
    spec = CASCADES["mixtral-gpt4"]
    examples = cascade_examples(records, spec, prior=prior, prior_outputs=("gain",))
    assert examples.feature_names[-1] == "prior_gain"
    assert examples.x[:, -1] == pytest.approx([i / 100 for i in range(50)])
    model = train_escalation(
        examples.x,
        examples.cheap_reward,
        examples.expensive_reward,
        examples.feature_names,
    )
    assert model.gain(examples.x).shape == (50,)


def test_train_escalation_command_writes_models_and_manifest(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "esc"
    code = predictor_main(
        ["predictor", "train", "--escalation", "--data-dir", str(data_dir), "--out", str(out)]
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(f"{n}.json" for n in CASCADES)
    doc = json.loads((out / "mixtral-gpt4.json").read_text())
    assert "prior_gain" not in doc["model"]["features"]  # no prior given: evidence only
    assert "auc_escalation_helps" in capsys.readouterr().out


def test_training_code_does_not_import_the_proxy() -> None:
    code = (
        "import sys, predictor_onnx.escalation, predictor_onnx.escalation_cli, "
        "predictor_onnx.evidence, predictor_onnx.answers; "
        "print(sorted(m for m in sys.modules if m == 'proxy' or m.startswith('proxy.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


SHIPPED = Path(__file__).resolve().parents[2] / "predictor_onnx" / "escalation_models"


def _shipped_bytes() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(SHIPPED.iterdir())}


def _train_escalation(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``adaptive-proxy predictor train --escalation …`` in its own process; temporary folders
    land in ``tmp_path``."""
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "predictor", "train", "--escalation", *args],
        cwd=SHIPPED.parents[1],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_train_escalation_without_out_writes_a_new_folder_not_the_shipped_models(
    data_dir: Path, tmp_path: Path
) -> None:
    before = _shipped_bytes()
    result = _train_escalation(["--data-dir", str(data_dir), "--cascade", "gpt3-175b"], tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(
        ln for ln in result.stdout.splitlines() if ln.startswith("escalation models written to ")
    )
    written = Path(line.removeprefix("escalation models written to ").split(" (manifest")[0])
    assert written.parent == tmp_path.resolve()
    manifest = json.loads((written / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["gpt3-175b.json"]
    assert _shipped_bytes() == before


def test_train_escalation_into_the_shipped_folder_needs_force(
    data_dir: Path, tmp_path: Path
) -> None:
    before = _shipped_bytes()
    result = _train_escalation(
        ["--data-dir", str(data_dir), "--cascade", "gpt3-175b", "--out", str(SHIPPED)], tmp_path
    )
    assert result.returncode != 0
    assert "--force" in result.stderr
    assert _shipped_bytes() == before
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_force_names_the_shipped_folder() -> None:
    assert escalation_out_dir(None, force=True) == SHIPPED
    assert escalation_out_dir(str(SHIPPED), force=True) == SHIPPED
    assert escalation_out_dir("elsewhere", force=False) == Path("elsewhere")
