"""The real recorded model outcomes the project reads, and where to find them.

A tiny package of its own so that the proxy, the benchmark and ``predictor_onnx`` all resolve
the data the same way without ``predictor_onnx`` importing ``proxy``; every reader of the
recorded files lives here too (``records`` for RouteLLM's, ``every_dataset`` for the rest,
``multisample`` for the per-sample suites).
"""

from recorded_data.bundle import BundleCorruptError, DataNotFoundError, RecordedDataError
from recorded_data.resolve import ENV_VAR, resolve_data_dir

__all__ = [
    "ENV_VAR",
    "BundleCorruptError",
    "DataNotFoundError",
    "RecordedDataError",
    "resolve_data_dir",
]
