"""The predictor factory: every YAML ``predictor.type`` builds, and ``check`` reads the outputs
``serve`` will have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from proxy.config.schema import PredictorConfig
from proxy.decide.prediction import HashPredictor, TablePredictor
from proxy.decide.predictors import PREDICTOR_TYPES, load_predictor, predictor_outputs


def test_every_schema_type_has_a_factory_entry() -> None:
    assert set(PREDICTOR_TYPES) == set(get_args(PredictorConfig.model_fields["type"].annotation))


@pytest.mark.parametrize("kind", ["none", "hash", "table"])
async def test_check_reads_the_outputs_serve_loads(kind: str, tmp_path: Path) -> None:
    table = tmp_path / "table.jsonl"
    row = {"messages": [{"role": "user", "content": "hi"}], "predictions": {"p_ok": 0.25}}
    table.write_text(json.dumps(row) + "\n")
    spec = PredictorConfig.model_validate(
        {"type": kind, **({"path": str(table)} if kind == "table" else {})}
    )
    predictor = load_predictor(spec)
    if kind == "none":
        assert predictor is None and predictor_outputs(spec) is None
        return
    assert predictor is not None
    assert isinstance(predictor, {"hash": HashPredictor, "table": TablePredictor}[kind])
    assert predictor_outputs(spec) == predictor.output_names
    await predictor.aclose()
