"""The predictor package's one error: a model folder that cannot be used.

``predictor_onnx`` imports nothing from ``proxy``; the proxy re-exports this class as
``proxy.wire.errors.PredictorLoadError`` so both sides name the same exception.
"""

from __future__ import annotations


class PredictorLoadError(Exception):
    """A predictor model file is missing or corrupt; raised at startup, never on a request."""
