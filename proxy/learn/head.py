"""A learned head: a per-policy correction of the shipped predictor, from the prompt's embedding.

For each target output (``p_weak``, ``p_strong``…) the head computes

    p = sigmoid((1 + prior_scale) · logit(p_prior) + embedding · weights + bias)

where ``p_prior`` is the shipped predictor's output: a logistic regression with the prior's logit
as an offset, so a head with zero weights *is* the prior. Derived outputs (``gain = p_strong −
p_weak``) are recomputed from the corrected ones. The head is a JSON document
(``adaptive-learned-head/1``) small enough (a few KB) to live in the outcome store, so that every
replica loads the promoted version from there; its sha256 (:func:`document_sha256`, over
:func:`canonical_bytes`) is checked on load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT = "adaptive-learned-head/1"
#: Probabilities are clipped before the logit: the prior's extremes stay finite offsets.
PROB_EPS = 1e-4
Array = npt.NDArray[np.float64]


class HeadDocumentError(ValueError):
    """A head document is malformed, of another format, or does not match its sha256."""


def logit(p: Any) -> Array:
    """``log(p / (1 − p))`` of probabilities clipped to [PROB_EPS, 1 − PROB_EPS]."""
    q = np.clip(np.asarray(p, dtype=np.float64), PROB_EPS, 1.0 - PROB_EPS)
    return np.asarray(np.log(q / (1.0 - q)), dtype=np.float64)


def sigmoid(z: Any) -> Array:
    """The logistic function, overflow-safe."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0))), dtype=np.float64)


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The bytes a head's sha256 is taken over (sorted keys, no whitespace)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def document_sha256(document: Mapping[str, Any]) -> str:
    """Hex sha256 of :func:`canonical_bytes`."""
    return hashlib.sha256(canonical_bytes(document)).hexdigest()


@dataclass(frozen=True)
class HeadTarget:
    """One corrected output: which prior output it replaces and its coefficients."""

    name: str
    prior_output: str
    weights: tuple[float, ...]
    prior_scale: float
    bias: float


@dataclass(frozen=True)
class LearnedHead:
    """A promoted (or candidate) head of one policy."""

    policy: str
    version: str
    embedding_dim: int
    targets: tuple[HeadTarget, ...]
    #: Derived outputs: name → (higher, lower) output; value = higher − lower.
    derived: Mapping[str, tuple[str, str]]
    meta: Mapping[str, Any]

    def probabilities(self, prior: Any, embedding: Any) -> Array:
        """Corrected probabilities ``(N, len(targets))`` from prior probabilities ``(N, T)`` (in
        target order) and embeddings ``(N, embedding_dim)``."""
        e = np.asarray(embedding, dtype=np.float64).reshape(-1, self.embedding_dim)
        p0 = np.asarray(prior, dtype=np.float64).reshape(len(e), len(self.targets))
        out = np.empty_like(p0)
        for j, t in enumerate(self.targets):
            z = (1.0 + t.prior_scale) * logit(p0[:, j]) + e @ np.asarray(t.weights) + t.bias
            out[:, j] = sigmoid(z)
        return out

    def apply(self, predictions: Mapping[str, float], embedding: Any) -> dict[str, float]:
        """``predictions`` with the targets corrected and the derived outputs recomputed.

        A prediction that lacks a target's prior output is returned unchanged (the policy's
        own fallback handles the missing name).
        """
        if any(t.prior_output not in predictions for t in self.targets):
            return dict(predictions)
        prior = [[predictions[t.prior_output] for t in self.targets]]
        probs = self.probabilities(prior, np.asarray(embedding)[None, :])[0]
        out = dict(predictions)
        for t, p in zip(self.targets, probs, strict=True):
            out[t.prior_output] = float(p)
        for name, (hi, lo) in self.derived.items():
            if hi in out and lo in out:
                out[name] = out[hi] - out[lo]
        return out

    def to_document(self) -> dict[str, Any]:
        """The JSON document (what the store and the export folder keep)."""
        return {
            "format": FORMAT,
            "policy": self.policy,
            "version": self.version,
            "embedding_dim": self.embedding_dim,
            "formula": "sigmoid((1 + prior_scale) * logit(prior) + embedding . weights + bias)",
            "targets": {
                t.name: {
                    "prior_output": t.prior_output,
                    "weights": list(t.weights),
                    "prior_scale": t.prior_scale,
                    "bias": t.bias,
                }
                for t in self.targets
            },
            "target_order": [t.name for t in self.targets],
            "derived": {k: list(v) for k, v in self.derived.items()},
            "meta": dict(self.meta),
        }

    @classmethod
    def from_document(
        cls, document: Mapping[str, Any], *, sha256: str | None = None
    ) -> LearnedHead:
        """Parse and check a document; ``sha256``, when given, must match it."""
        if sha256 is not None and document_sha256(document) != sha256:
            raise HeadDocumentError("learned head does not match its sha256")
        if document.get("format") != FORMAT:
            raise HeadDocumentError(f"not a learned head ({document.get('format')!r} ≠ {FORMAT})")
        try:
            dim = int(document["embedding_dim"])
            raw = document["targets"]
            targets = tuple(
                HeadTarget(
                    name=str(name),
                    prior_output=str(raw[name]["prior_output"]),
                    weights=tuple(float(w) for w in raw[name]["weights"]),
                    prior_scale=float(raw[name]["prior_scale"]),
                    bias=float(raw[name]["bias"]),
                )
                for name in document["target_order"]
            )
            derived = {str(k): (str(v[0]), str(v[1])) for k, v in document["derived"].items()}
            head = cls(
                policy=str(document["policy"]),
                version=str(document["version"]),
                embedding_dim=dim,
                targets=targets,
                derived=derived,
                meta=dict(document.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise HeadDocumentError(f"learned head malformed: {exc!r}") from exc
        if any(len(t.weights) != dim for t in targets):
            raise HeadDocumentError("learned head: a target's weights do not match embedding_dim")
        if len({t.prior_output for t in targets}) != len(targets):
            raise HeadDocumentError("learned head: two targets correct the same output")
        return head


def rounded(values: Sequence[float] | Any, *, digits: int = 7) -> tuple[float, ...]:
    """Floats rounded to ``digits`` significant digits: short in JSON, and they read back
    exactly, so the head that was scored is the head that is exported."""
    return tuple(float(f"{float(v):.{digits}g}") for v in np.asarray(values).ravel())
