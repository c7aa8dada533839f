"""The cascade's escalation decision at serving time: evidence → predicted gain of escalating.

Two escalators, one interface (``gain(features) -> float``; escalate iff gain ≥ the threshold,
or ≥ λ · Δcost):

* :class:`AgreementRule` — no model: gain 1 when the cheap answers disagree (or none was found),
  0 when they agree;
* :class:`EscalationModel` — the weights trained by ``adaptive-proxy predictor train
  --escalation`` (:mod:`predictor_onnx.escalation`), loaded from their JSON after checking its
  sha256 against the folder's ``manifest.json``.

Features come from :func:`predictor_onnx.evidence.evidence_features`, the function training used.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from predictor_onnx.escalation_format import (
    HEADS,
    MANIFEST_NAME,
    MODEL_FORMAT,
    REBUILD_HINT,
    shipped_escalation_dir,
)
from predictor_onnx.evidence import SampleEvidence, evidence_features, majority_answer


def resolve_model_path(name_or_path: str) -> Path:
    """A shipped model by name (``mixtral-gpt4``) or a path to a model JSON."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        return path
    return shipped_escalation_dir() / f"{name_or_path}.json"


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))


@dataclass(frozen=True)
class AgreementRule:
    """Escalate iff the cheap answers disagree, or no cheap answer was found."""

    kind: ClassVar[str] = "agreement"

    def gain(self, features: Mapping[str, float]) -> float:
        """1 when escalating is indicated, else 0."""
        return 0.0 if features.get("agree", 0.0) >= 0.5 else 1.0


@dataclass(frozen=True)
class EscalationModel:
    """Two logistic heads on standardised features; gain = P(expensive right) − P(cheap right).

    A feature the request cannot provide (no prior because the predictor fell back; no
    logprobs) takes its training mean, i.e. contributes nothing.
    """

    name: str
    sha256: str
    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: Mapping[str, tuple[float, ...]]
    bias: Mapping[str, float]
    stages: tuple[str, ...] = ()

    kind: ClassVar[str] = "model"

    @classmethod
    def load(cls, path: Path) -> EscalationModel:
        """Read and verify a model JSON; ``ValueError`` names the file and how to rebuild it."""
        manifest_path = path.parent / MANIFEST_NAME
        try:
            payload = path.read_bytes()
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(
                f"escalation model {path}: {exc.strerror or exc}; {REBUILD_HINT}"
            ) from exc
        except ValueError as exc:
            raise ValueError(f"{manifest_path} is not valid JSON ({exc}); {REBUILD_HINT}") from exc
        digest = hashlib.sha256(payload).hexdigest()
        expected = manifest.get("files", {}).get(path.name) if isinstance(manifest, dict) else None
        if expected != digest:
            raise ValueError(
                f"escalation model {path}: sha256 {digest[:12]}… does not match "
                f"{manifest_path} ({'missing' if expected is None else expected[:12] + '…'}); "
                f"{REBUILD_HINT}"
            )
        try:
            return cls._from_document(json.loads(payload), digest)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"escalation model {path} is malformed ({exc}); {REBUILD_HINT}"
            ) from exc

    @classmethod
    def _from_document(cls, doc: Mapping[str, Any], digest: str) -> EscalationModel:
        if doc.get("format") != MODEL_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {MODEL_FORMAT!r}")
        model = doc["model"]
        features = tuple(str(f) for f in model["features"])
        weights = {h: tuple(float(w) for w in model["heads"][h]["weights"]) for h in HEADS}
        sizes = {len(features), len(model["mean"]), len(model["scale"])}
        sizes |= {len(w) for w in weights.values()}
        if len(sizes) != 1:
            raise ValueError("features, mean, scale and weights differ in length")
        return cls(
            name=str(doc.get("name", "")),
            sha256=digest,
            features=features,
            mean=tuple(float(v) for v in model["mean"]),
            scale=tuple(float(v) for v in model["scale"]),
            weights=weights,
            bias={h: float(model["heads"][h]["bias"]) for h in HEADS},
            stages=tuple(str(s) for s in doc.get("stages", ())),
        )

    def probabilities(self, features: Mapping[str, float]) -> dict[str, float]:
        """``P(cheap answer right)`` and ``P(expensive right)`` for one request's evidence."""
        z = [
            (features[name] - mu) / sd if name in features else 0.0
            for name, mu, sd in zip(self.features, self.mean, self.scale, strict=True)
        ]
        return {
            head: _sigmoid(sum(w * x for w, x in zip(self.weights[head], z, strict=True)) + b)
            for head, b in self.bias.items()
        }

    def gain(self, features: Mapping[str, float]) -> float:
        """Predicted reward gain of escalating."""
        probs = self.probabilities(features)
        return probs["expensive_correct"] - probs["cheap_correct"]


Escalator = AgreementRule | EscalationModel


@dataclass(frozen=True)
class Assessment:
    """What the cheap stages showed and whether to escalate.

    ``answered_by`` indexes ``samples``: the sample whose answer the cascade returns when it does
    not escalate (the majority answer; ties to the earliest stage; the first sample that arrived
    when none had an extractable answer). ``reason`` says why: ``gain`` (the escalator's gain
    against the threshold or λ · Δcost) or ``no_cheap_answer`` (every cheap sample failed).
    """

    samples: tuple[SampleEvidence, ...]
    features: Mapping[str, float]
    answer: str | None
    answered_by: int | None
    gain: float | None
    escalate: bool
    reason: str


def assess(
    samples: Sequence[SampleEvidence],
    prior: Mapping[str, float],
    escalator: Escalator,
    *,
    threshold: float | None,
    lambda_: float | None,
    delta_cost_usd: float,
) -> Assessment:
    """Escalate iff ``gain ≥ threshold`` (fixed), else iff ``gain ≥ λ · Δcost_usd``."""
    arrived = [i for i, s in enumerate(samples) if s.text is not None]
    if not arrived:
        return Assessment(tuple(samples), {}, None, None, None, True, "no_cheap_answer")
    features = evidence_features(samples, prior)
    answer, first = majority_answer(samples)
    gain = escalator.gain(features)
    if threshold is not None:
        escalate = gain >= threshold
    else:
        escalate = gain >= (lambda_ or 0.0) * delta_cost_usd
    answered_by = first if first is not None else arrived[0]
    return Assessment(tuple(samples), features, answer, answered_by, gain, escalate, "gain")
