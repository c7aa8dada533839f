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

from proxy.wire.protocol import message_text

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


def _conversation_text(messages: Messages) -> str:
    return "\n".join(f"{m.get('role', '')}:{message_text(m.get('content'))}" for m in messages)


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
        names = [*(f"p_{a}" for a in self._arms), "gain"]
        # Steered values are outputs too: a policy may read a name only an override sets.
        names += sorted({k for v in self._overrides.values() for k in v} - set(names))
        return tuple(names)

    def _one(self, messages: Messages) -> dict[str, float]:
        text = _conversation_text(messages)
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


def conversation_key(messages: Messages) -> str:
    """Identity of a conversation for table lookups: every role and every turn's text."""
    canon = [
        [str(m.get("role", "")), " ".join(message_text(m.get("content")).split())] for m in messages
    ]
    import orjson

    return hashlib.sha256(orjson.dumps(canon)).hexdigest()


class UnknownPromptError(KeyError):
    """A table predictor has no row for the conversation."""


class TablePredictor:
    """Predictions looked up from a JSONL table of ``{"messages": [...], "predictions": {...}}``.

    The benchmark uses it to serve out-of-fold predictions (made by heads that never saw the
    prompt) through the live proxy; operators can use it to pin predictions for known prompts. A
    conversation missing from the table raises, so the proxy falls back to the default arm.

    A row may also carry ``"embedding": [float, ...]``, the prompt's encoder embedding: the
    learning loop logs it and a learned head corrects the row's predictions from it, as it does
    the ONNX predictor's (``bench --online --live`` serves a suite's prior so).
    """

    def __init__(
        self,
        rows: Mapping[str, Mapping[str, float]],
        embeddings: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self._rows = {k: dict(v) for k, v in rows.items()}
        self._embeddings = {k: tuple(float(x) for x in v) for k, v in (embeddings or {}).items()}
        names: set[str] = set()
        for values in self._rows.values():
            names.update(values)
        self._names = tuple(sorted(names))

    @classmethod
    def from_jsonl(cls, path: str) -> TablePredictor:
        """Load a table; a malformed line is an error naming the file and line."""
        import orjson

        from proxy.wire.errors import PredictorLoadError

        rows: dict[str, dict[str, float]] = {}
        embeddings: dict[str, list[float]] = {}
        try:
            with open(path, "rb") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        item = orjson.loads(line)
                        key = conversation_key(item["messages"])
                        rows[key] = {str(k): float(v) for k, v in item["predictions"].items()}
                        if item.get("embedding") is not None:
                            embeddings[key] = [float(x) for x in item["embedding"]]
                    except (
                        orjson.JSONDecodeError,
                        KeyError,
                        TypeError,
                        ValueError,
                        AttributeError,
                    ) as exc:
                        raise PredictorLoadError(
                            f'{path}:{number}: expected {{"messages": [...], "predictions": '
                            f"{{name: number}}}} ({type(exc).__name__})"
                        ) from None
        except OSError as exc:
            raise PredictorLoadError(
                f"cannot read prediction table {path}: {exc.strerror}"
            ) from None
        return cls(rows, embeddings)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._names

    def __len__(self) -> int:
        return len(self._rows)

    async def predict(self, batch: Sequence[Messages]) -> list[dict[str, float]]:
        out = []
        for messages in batch:
            row = self._rows.get(conversation_key(messages))
            if row is None:
                raise UnknownPromptError("conversation not in the prediction table")
            out.append(dict(row))
        return out

    async def predict_embedded(
        self, batch: Sequence[Messages]
    ) -> list[tuple[dict[str, float], tuple[float, ...] | None]]:
        """Each row's predictions with its embedding (``None`` for a row without one)."""
        predictions = await self.predict(batch)
        keys = [conversation_key(messages) for messages in batch]
        return [(p, self._embeddings.get(k)) for p, k in zip(predictions, keys, strict=True)]

    async def aclose(self) -> None:
        return None
