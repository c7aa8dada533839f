"""``predictor predict`` and ``predictor train --jsonl`` called in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from predictor_onnx.cli import main
from predictor_onnx.runtime import OnnxPredictor


def test_predict_reads_jsonl_and_writes_predictions(model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"id": "a", "messages": [{"role": "user", "content": "2+2?"}]})
        + "\n"
        + json.dumps([{"role": "user", "content": "Write a poem."}])
        + "\n"
    )
    target = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "predictor",
                "predict",
                "--model",
                str(model_dir),
                "--input",
                str(source),
                "--output",
                str(target),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert rows[0]["id"] == "a"
    assert "id" not in rows[1]
    assert {"p_weak", "p_strong", "gain"} <= set(rows[1]["predictions"])


def test_train_your_own_from_jsonl(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx")
    source = tmp_path / "mine.jsonl"
    lines = []
    for i in range(40):
        hard = i % 2 == 0
        text = f"Prove theorem {i} about primes in detail" if hard else f"Say hello {i}"
        lines.append(
            json.dumps(
                {
                    "messages": [{"role": "user", "content": text}],
                    "rewards": {"small": 0.0 if hard else 1.0, "large": 1.0},
                }
            )
        )
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "my_model"
    assert (
        main(
            [
                "predictor",
                "train",
                "--jsonl",
                str(source),
                "--out",
                str(out),
                "--encoder-from",
                str(model_dir),
                "--head",
                "linear",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"path: {out.resolve()}" in printed
    assert "| custom | gain |" in printed
    predictor = OnnxPredictor.load(out)
    assert set(predictor.output_names) == {"p_small", "p_large", "gain"}
    [pred] = predictor.predict_sync([[{"role": "user", "content": "Prove theorem 99"}]])
    assert pred["gain"] == pytest.approx(pred["p_large"] - pred["p_small"])
    assert (out / "MODEL_CARD.md").is_file()


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ('{"messages": [{"role": "user", "content": "hi"}', "line 2: not JSON"),
        ('{"messages": []}', "line 2: `messages` is empty"),
        ('{"prompt": "hi"}', "line 2: expected"),
    ],
)
def test_predict_names_the_bad_line(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad_line: str,
    expected: str,
) -> None:
    source = tmp_path / "in.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "2+2?"}]})
    source.write_text(f"{good}\n{bad_line}\n")
    target = tmp_path / "out.jsonl"
    assert (
        main(
            [
                "predictor",
                "predict",
                "--model",
                str(model_dir),
                "--input",
                str(source),
                "--output",
                str(target),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"{source}: {expected}" in err
