"""The predictor factory: YAML ``predictor.type`` → how to build it and read its outputs.

One entry per type in :data:`PREDICTOR_TYPES`, as the policy registry has one per policy
``type``: ``serve`` builds the predictor with :func:`load_predictor`, and ``check`` reads the
outputs the policies may name with :func:`predictor_outputs` (from the same files, verified the
same way, without starting the model). Adding a predictor type is one entry here and one name in
:class:`~proxy.config.schema.PredictorConfig`'s ``type``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.config.schema import PredictorConfig
from proxy.decide.prediction import HashPredictor, Predictor, TablePredictor


@dataclass(frozen=True, slots=True)
class PredictorType:
    """How one ``predictor.type`` is built (blocking) and what it outputs (``None``: none)."""

    load: Callable[[PredictorConfig], Predictor | None]
    outputs: Callable[[PredictorConfig], tuple[str, ...] | None]


def _table(spec: PredictorConfig) -> TablePredictor:
    assert spec.path is not None  # the schema requires a path for a table
    return TablePredictor.from_jsonl(spec.path)


def _load_onnx(spec: PredictorConfig) -> Predictor:
    # onnxruntime is heavy: imported only by a proxy that serves the ONNX predictor.
    from predictor_onnx.runtime import OnnxPredictor

    predictor: Predictor = OnnxPredictor.load(
        Path(spec.path) if spec.path else None,
        max_batch_size=spec.max_batch_size,
        batch_window_ms=spec.batch_window_ms,
        threads=spec.threads,
        workers=spec.workers,
    )
    return predictor


def _onnx_outputs(spec: PredictorConfig) -> tuple[str, ...]:
    # The manifest alone names the outputs (and its hashes verify the files): no session starts.
    from predictor_onnx.manifest import read_manifest
    from predictor_onnx.runtime import shipped_model_dir

    manifest: Any = read_manifest(Path(spec.path) if spec.path else shipped_model_dir())
    return tuple(manifest.output_names)


PREDICTOR_TYPES: dict[str, PredictorType] = {
    "none": PredictorType(load=lambda spec: None, outputs=lambda spec: None),
    "hash": PredictorType(
        load=lambda spec: HashPredictor(), outputs=lambda spec: HashPredictor().output_names
    ),
    "table": PredictorType(load=_table, outputs=lambda spec: _table(spec).output_names),
    "onnx": PredictorType(load=_load_onnx, outputs=_onnx_outputs),
}


def load_predictor(spec: PredictorConfig) -> Predictor | None:
    """Build the configured predictor (blocking: call it in an executor); ``None`` for
    ``type: none`` (every policy serves its default arm)."""
    return PREDICTOR_TYPES[spec.type].load(spec)


def predictor_outputs(spec: PredictorConfig) -> tuple[str, ...] | None:
    """The outputs of the configured predictor, read without starting it (for ``check``).

    Reads and verifies the predictor's files (manifest, hashes, table) as ``serve`` does at
    start-up. ``None`` for ``predictor: {type: none}``: no predictor, every policy serves its
    default arm. Raises :class:`~proxy.wire.errors.PredictorLoadError` (or ``OSError`` /
    ``ValueError`` for an unreadable table) for a missing or corrupt predictor.
    """
    return PREDICTOR_TYPES[spec.type].outputs(spec)
