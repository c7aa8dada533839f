"""The predictor package's own error and message types (it imports nothing from the server)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# One conversation in OpenAI's ``messages`` shape.
Messages = Sequence[Mapping[str, Any]]


class PredictorLoadError(Exception):
    """A predictor model file is missing or corrupt; raised at startup, never on a request."""
