"""The escalation model's file format: one home for what training writes and the proxy reads.

Training (:mod:`predictor_onnx.escalation`) writes ``<name>.json`` documents of this format and
records their sha256 in the folder's manifest; the proxy (``proxy.policies.escalation``) checks
both before it trusts a model. Neither side spells these names itself.
"""

from __future__ import annotations

from pathlib import Path

from predictor_onnx.manifest import MANIFEST_NAME

#: ``format`` of a model JSON.
MODEL_FORMAT = "adaptive-escalation/1"
#: ``format`` of the escalation folder's manifest (file name: ``MANIFEST_NAME``).
MANIFEST_FORMAT = "adaptive-escalation-manifest/1"
#: The model's two logistic heads, in the document's order; gain = second − first.
HEADS = ("cheap_correct", "expensive_correct")
#: How to rebuild a missing or corrupt model, quoted by every load error.
REBUILD_HINT = "rebuild it with `adaptive-proxy predictor train --escalation --out FOLDER`"

__all__ = [
    "HEADS",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MODEL_FORMAT",
    "REBUILD_HINT",
    "shipped_escalation_dir",
]


def shipped_escalation_dir() -> Path:
    """The folder of the escalation models shipped inside ``predictor_onnx``."""
    return Path(__file__).resolve().parent / "escalation_models"
