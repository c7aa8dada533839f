"""The documented JSONL format for training your own predictor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from predictor_onnx.custom import CustomDataError, load_jsonl_records, parse_gains


def _write(tmp_path: Path, rows: list[object]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_records_arms_and_default_gain(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"messages": [{"role": "user", "content": "a"}], "rewards": {"cheap": 0, "big": True}},
            {
                "messages": [{"role": "user", "content": "b"}],
                "rewards": {"cheap": 0.5},
                "id": "x",
                "group": "g",
                "dataset": "support",
            },
        ],
    )
    records, arms = load_jsonl_records(path)
    assert arms == ("cheap", "big")
    assert records[0].rewards == {"cheap": 0.0, "big": 1.0}
    assert (records[1].prompt_id, records[1].group_id, records[1].dataset) == ("x", "g", "support")
    assert parse_gains([], arms) == {"gain": ("big", "cheap")}
    assert parse_gains(["g2=cheap-big"], arms) == {"g2": ("cheap", "big")}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"rewards": {"a": 1}}, "'messages'"),
        ({"messages": [], "rewards": {}}, "'rewards'"),
        ({"messages": [], "rewards": {"a": 2}}, r"\[0, 1\]"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_lines_name_the_line(tmp_path: Path, row: object, message: str) -> None:
    with pytest.raises(CustomDataError, match=rf"data\.jsonl:1: .*{message}"):
        load_jsonl_records(_write(tmp_path, [row]))


def test_bad_gain_spec_is_rejected() -> None:
    with pytest.raises(CustomDataError):
        parse_gains(["gain=x-y"], ("a", "b"))
