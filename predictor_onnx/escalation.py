"""The escalation model of cascades: evidence from the cheap answers → predicted gain of escalating.

Trained on recorded outcomes (``adaptive-proxy predictor train --escalation``) like the prompt
predictor, exported as a JSON of weights whose sha256 is written to the folder's
``manifest.json``. The proxy applies it (``proxy.policies.escalation``); this module never
imports the proxy.

The model is two logistic regressions on standardised :mod:`predictor_onnx.evidence` features:
``P(the cheap answer is right)`` and ``P(the expensive stage is right)``; the predicted gain of
escalating is their difference. The cheap answer is the majority of the cheap stages' answers
(ties to the earliest stage), which is what a cascade returns without escalating. Fitting is
Newton's method with an L2 penalty (numpy only: no training dependency).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from predictor_onnx.answers import extract_answer
from predictor_onnx.escalation_format import HEADS, MANIFEST_FORMAT, MANIFEST_NAME, MODEL_FORMAT
from predictor_onnx.evaluate import fold_of
from predictor_onnx.evidence import (
    EVIDENCE_FEATURES,
    PRIOR_PREFIX,
    SampleEvidence,
    evidence_features,
    majority_answer,
)
from predictor_onnx.metrics import auc

if TYPE_CHECKING:
    from recorded_data.records import Record

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CascadeSpec:
    """A recorded cascade: cheap stages (system keys of ``Record.rewards``) then the escalation."""

    name: str
    stages: tuple[str, ...]
    expensive: str
    description: str
    prior_outputs: tuple[str, ...] = ()  # prompt-predictor outputs the model reads


# The shipped models. Checkers were compared by ``python -m bench.cascade``: a Mixtral second
# opinion is what makes the 175B cascade pay; a 6B one barely helps it.
CASCADES: Mapping[str, CascadeSpec] = {
    "mixtral-gpt4": CascadeSpec(
        "mixtral-gpt4",
        ("weak", "6b_finetuning"),
        "strong",
        "Mixtral-8x7B, checked by one GPT-3 6B sample, escalating to GPT-4 (GSM8K)",
        ("gain",),
    ),
    "gpt3-175b": CascadeSpec(
        "gpt3-175b",
        ("175b_finetuning", "weak"),
        "175b_verification",
        "GPT-3 175B one sample, checked by Mixtral-8x7B, escalating to 175B best-of-100 "
        "with a verifier (GSM8K)",
        ("gain_175b",),
    ),
}


@dataclass(frozen=True)
class CascadeExamples:
    """One row per recorded prompt: evidence features and both stages' outcomes."""

    spec: CascadeSpec
    prompt_ids: tuple[str, ...]
    groups: tuple[str, ...]
    feature_names: tuple[str, ...]
    x: Array
    cheap_reward: Array
    expensive_reward: Array
    agree: npt.NDArray[np.bool_]

    def subset(self, rows: npt.NDArray[np.bool_]) -> CascadeExamples:
        """The examples of the selected rows (a boolean mask)."""
        keep = np.flatnonzero(rows)
        return replace(
            self,
            prompt_ids=tuple(self.prompt_ids[i] for i in keep),
            groups=tuple(self.groups[i] for i in keep),
            x=self.x[keep],
            cheap_reward=self.cheap_reward[keep],
            expensive_reward=self.expensive_reward[keep],
            agree=self.agree[keep],
        )


def cascade_examples(
    records: Sequence[Record],
    spec: CascadeSpec,
    *,
    prior: Mapping[str, Mapping[str, float]] | None = None,
    prior_outputs: Sequence[str] = (),
) -> CascadeExamples:
    """Featurise every record that recorded all of ``spec``'s systems.

    ``prior`` maps prompt ids to prompt-predictor outputs that must come from a predictor that
    never saw the prompt (out-of-fold), else the model learns to trust an overfitted prior;
    ``prior_outputs`` names the outputs used (``prior_<name>`` features).
    """
    systems = (*spec.stages, spec.expensive)
    chosen = [r for r in records if all(s in r.rewards and s in r.responses for s in systems)]
    if prior_outputs and prior is None:
        raise ValueError("prior_outputs needs prior predictions")
    names = (*EVIDENCE_FEATURES, *(PRIOR_PREFIX + o for o in prior_outputs))
    rows, cheap, expensive, agree, kept = [], [], [], [], []
    for rec in chosen:
        if prior_outputs and prior is not None and rec.prompt_id not in prior:
            continue
        samples = [
            SampleEvidence(i, rec.responses[s], extract_answer(rec.responses[s]))
            for i, s in enumerate(spec.stages)
        ]
        given = {o: prior[rec.prompt_id][o] for o in prior_outputs} if prior is not None else {}
        features = evidence_features(samples, given)
        rows.append([features[n] for n in names])
        _, first = majority_answer(samples)
        answered_by = spec.stages[first if first is not None else 0]
        cheap.append(float(rec.rewards[answered_by]))
        expensive.append(float(rec.rewards[spec.expensive]))
        agree.append(bool(features["agree"]))
        kept.append(rec)
    return CascadeExamples(
        spec,
        tuple(r.prompt_id for r in kept),
        tuple(r.group_id for r in kept),
        names,
        np.asarray(rows, dtype=np.float64).reshape(len(kept), len(names)),
        np.asarray(cheap),
        np.asarray(expensive),
        np.asarray(agree, dtype=bool),
    )


def _sigmoid(z: Array) -> Array:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0))), dtype=np.float64)


def fit_logistic(x: Array, y: Array, *, l2: float = 1.0, iters: int = 50) -> tuple[Array, float]:
    """L2-penalised logistic regression (intercept unpenalised) by Newton's method."""
    n, d = x.shape
    design = np.concatenate([x, np.ones((n, 1))], axis=1)
    theta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(iters):
        p = _sigmoid(design @ theta)
        grad = design.T @ (p - y) + penalty * theta
        hess = (
            design.T @ (design * (p * (1 - p))[:, None]) + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        )
        step = np.linalg.solve(hess, grad)
        theta -= step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return theta[:-1].copy(), float(theta[-1])


@dataclass(frozen=True)
class EscalationWeights:
    """A trained escalation model: standardisation and one logistic head per outcome."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: Mapping[str, tuple[float, ...]]
    bias: Mapping[str, float]

    def probabilities(self, x: Array) -> dict[str, Array]:
        """``P(cheap answer right)`` and ``P(expensive right)`` for rows of features."""
        z = (np.asarray(x, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return {h: _sigmoid(z @ np.asarray(self.weights[h]) + self.bias[h]) for h in HEADS}

    def gain(self, x: Array) -> Array:
        """Predicted reward gain of escalating: ``P(expensive right) − P(cheap right)``."""
        probs = self.probabilities(x)
        return probs["expensive_correct"] - probs["cheap_correct"]

    def to_json(self) -> dict[str, Any]:
        """The exported weights (the ``model`` part of the JSON file)."""
        return {
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "heads": {h: {"weights": list(self.weights[h]), "bias": self.bias[h]} for h in HEADS},
        }


def train_escalation(
    x: Array, cheap_reward: Array, expensive_reward: Array, features: Sequence[str], l2: float = 1.0
) -> EscalationWeights:
    """Fit both heads on standardised features."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0  # a constant feature: the head learns its weight as 0
    z = (x - mean) / scale
    weights: dict[str, tuple[float, ...]] = {}
    bias: dict[str, float] = {}
    for head, y in zip(HEADS, (cheap_reward, expensive_reward), strict=True):
        w, b = fit_logistic(z, y, l2=l2)
        weights[head], bias[head] = tuple(float(v) for v in w), b
    return EscalationWeights(
        tuple(features),
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        weights,
        bias,
    )


def oof_gain(
    examples: CascadeExamples, *, n_folds: int = 5, seed: int = 0, l2: float = 1.0
) -> Array:
    """Out-of-fold predicted gains: each prompt scored by a model trained on the other folds.

    Folds are grouped (``Record.group_id``) with :func:`predictor_onnx.evaluate.fold_of`, so no
    prompt is ever scored by a model that saw it.
    """
    folds = fold_of(examples.groups, n_folds, seed)
    out = np.zeros(len(examples.prompt_ids))
    for k in range(n_folds):
        test = folds == k
        model = train_escalation(
            examples.x[~test],
            examples.cheap_reward[~test],
            examples.expensive_reward[~test],
            examples.feature_names,
            l2,
        )
        out[test] = model.gain(examples.x[test])
    return out


def held_out_metrics(examples: CascadeExamples, gain: Array) -> dict[str, float]:
    """How well out-of-fold gains rank the prompts where escalating pays."""
    helps = examples.expensive_reward > examples.cheap_reward
    return {
        "prompts": float(len(gain)),
        "auc_escalation_helps": auc(gain, helps),
        "auc_agreement_rule": auc((~examples.agree).astype(float), helps),
        "agreement_rate": float(examples.agree.mean()),
        "cheap_accuracy": float(examples.cheap_reward.mean()),
        "expensive_accuracy": float(examples.expensive_reward.mean()),
    }


def export_escalation(
    out_dir: Path,
    spec: CascadeSpec,
    model: EscalationWeights,
    *,
    metrics: Mapping[str, float],
    note: str = "",
) -> Path:
    """Write ``<spec.name>.json`` into ``out_dir`` and record its sha256 in the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.json"
    document = {
        "format": MODEL_FORMAT,
        "name": spec.name,
        "description": spec.description,
        "stages": list(spec.stages),
        "expensive": spec.expensive,
        "gain": "sigmoid(expensive_correct) - sigmoid(cheap_correct) on (x - mean) / scale",
        "model": model.to_json(),
        "held_out": {k: round(float(v), 4) for k, v in metrics.items()},
        "note": note,
    }
    payload = json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
    path.write_bytes(payload)
    manifest_path = out_dir / MANIFEST_NAME
    manifest: dict[str, Any] = {"format": MANIFEST_FORMAT, "files": {}}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"][path.name] = hashlib.sha256(payload).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", "utf-8")
    return path


def read_prior_jsonl(paths: Sequence[Path]) -> dict[str, dict[str, float]]:
    """Out-of-fold prompt-predictor outputs by prompt id, from JSONL files.

    Each line has ``prompt_id`` and ``predictions``: the outputs themselves, or the benchmark's
    ``*.records.jsonl`` form whose ``predictions.cv`` holds them (later files add outputs).
    """
    out: dict[str, dict[str, float]] = {}
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                predictions = row["predictions"]
                if isinstance(predictions.get("cv"), Mapping):
                    predictions = predictions["cv"]
                out.setdefault(str(row["prompt_id"]), {}).update(
                    {str(k): float(v) for k, v in predictions.items()}
                )
    return out


def build_escalation(
    records: Sequence[Record],
    spec: CascadeSpec,
    out_dir: Path,
    *,
    prior: Mapping[str, Mapping[str, float]] | None,
    l2: float = 1.0,
) -> tuple[Path, dict[str, float]]:
    """Evaluate out of fold, train on every prompt, export; returns the file and its metrics.

    Without ``prior`` the model reads the evidence features only (``prior_outputs`` dropped).
    """
    outputs = spec.prior_outputs if prior is not None else ()
    examples = cascade_examples(records, spec, prior=prior, prior_outputs=outputs)
    if not examples.prompt_ids:
        raise ValueError(f"no record has every system of cascade {spec.name!r}")
    metrics = held_out_metrics(examples, oof_gain(examples, l2=l2))
    model = train_escalation(
        examples.x, examples.cheap_reward, examples.expensive_reward, examples.feature_names, l2
    )
    note = (
        "prior features are out-of-fold prompt-predictor outputs"
        if outputs
        else "evidence features only (no prior given at training)"
    )
    path = export_escalation(
        out_dir, replace(spec, prior_outputs=outputs), model, metrics=metrics, note=note
    )
    return path, metrics
