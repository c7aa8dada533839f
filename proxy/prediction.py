"""The predictor interface the proxy depends on, and the test predictor.

A predictor maps a batch of OpenAI ``messages`` lists to named predictions: calibrated success
probabilities (or expected normalised scores) per decoding arm — ``p_weak``, ``p_strong``,
``p_6b_finetuning``, … — and derived gains such as ``gain = p_strong - p_weak``. Policies read
predictions by name (``predictor_output`` in the YAML).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

Messages = Sequence[Mapping[str, Any]]


@runtime_checkable
class Predictor(Protocol):
    """What the proxy needs from a predictor (the ONNX one, or a test double)."""

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the values each prediction carries."""
        ...

    async def predict(self, batch: Sequence[Messages]) -> list[dict[str, float]]:
        """Predictions for each ``messages`` list, in order. Never blocks the event loop."""
        ...

    async def aclose(self) -> None:
        """Release threads and sessions."""
        ...


def _message_text(messages: Messages) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(
                str(p.get("text", "")) for p in content if isinstance(p, Mapping)
            )
        parts.append(f"{message.get('role', '')}:{content or ''}")
    return "\n".join(parts)


class HashPredictor:
    """Deterministic stand-in predictor: values derived from a hash of the whole conversation.

    It is not a model of anything; it exists so the proxy can run and be tested before (or
    without) the ONNX predictor, and its outputs are reproducible across processes.
    ``overrides`` maps a substring of the conversation text to fixed predictions, which lets tests
    steer a decision.
    """

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, float]] | None = None,
        *,
        arms: Sequence[str] = ("weak", "strong"),
    ) -> None:
        self._overrides = {k: dict(v) for k, v in (overrides or {}).items()}
        self._arms = tuple(arms)
        self.calls = 0

    @property
    def output_names(self) -> tuple[str, ...]:
        return (*(f"p_{a}" for a in self._arms), "gain")

    def _one(self, messages: Messages) -> dict[str, float]:
        text = _message_text(messages)
        for needle, values in self._overrides.items():
            if needle in text:
                out = dict(values)
                if "gain" not in out and "p_strong" in out and "p_weak" in out:
                    out["gain"] = out["p_strong"] - out["p_weak"]
                return out
        digest = hashlib.sha256(text.encode()).digest()
        out = {f"p_{arm}": digest[i] / 255.0 for i, arm in enumerate(self._arms)}
        if "p_strong" in out and "p_weak" in out:
            out["gain"] = out["p_strong"] - out["p_weak"]
        return out

    async def predict(self, batch: Sequence[Messages]) -> list[dict[str, float]]:
        self.calls += 1
        return [self._one(m) for m in batch]

    async def aclose(self) -> None:
        return None
