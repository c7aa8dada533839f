"""What a policy's head learns, and the training rows its labelled records give.

* A route policy (or a cascade's route gain) learns per-arm success: one target per arm, named
  as ``x-adaptive-arm`` names it (``cheap``, ``expensive``), each correcting the predictor output
  the policy reads for that arm (``p_weak``, ``p_strong``); the gain is derived. Labels:
  ``arm_rewards[arm]``, or ``reward`` for the arm that answered (a reward alone informs that arm
  only: the other arm's target is unobserved, not zero).
* A best-of-k policy learns the success probability of one sample: one target, ``sample``,
  correcting the output the policy reads (``p_weak``…). Labels: ``sample_success`` (the verifier's
  accept share, or the settled answer's vote share), weighted by the samples drawn (capped).

When several labels give a target, explicit feedback wins over an explored pair, which wins over
a free label; among labels of one kind the latest wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from proxy.learn.records import LabelKind, LabelRecord, OutcomeRecord
from proxy.learn.store import Labelled

TargetKind = Literal["arm_reward", "sample_success"]
SAMPLE_TARGET = "sample"
#: One prompt's many samples are correlated: its weight grows with them only up to this.
MAX_SAMPLE_WEIGHT = 16
_PRIORITY: Mapping[LabelKind, int] = {"free": 0, "explored": 1, "feedback": 2}


@dataclass(frozen=True)
class TargetSpec:
    """One output a head corrects."""

    name: str
    prior_output: str
    kind: TargetKind


@dataclass(frozen=True)
class HeadSpec:
    """What a policy's head learns: its targets and the outputs derived from them."""

    policy: str
    targets: tuple[TargetSpec, ...]
    derived: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("a head needs at least one target")
        if len({t.prior_output for t in self.targets}) != len(self.targets):
            raise ValueError("two targets correct the same predictor output")


def route_spec(
    policy: str, *, cheap_output: str, expensive_output: str, gain_output: str | None = "gain"
) -> HeadSpec:
    """A route policy's head: success of ``cheap`` and ``expensive``; ``gain_output`` derived."""
    targets = (
        TargetSpec("cheap", cheap_output, "arm_reward"),
        TargetSpec("expensive", expensive_output, "arm_reward"),
    )
    derived = {gain_output: (expensive_output, cheap_output)} if gain_output else {}
    return HeadSpec(policy, targets, derived)


def best_of_k_spec(policy: str, *, output: str) -> HeadSpec:
    """A best-of-k policy's head: the success probability of one sample (``output``)."""
    return HeadSpec(policy, (TargetSpec(SAMPLE_TARGET, output, "sample_success"),))


@dataclass(frozen=True)
class Examples:
    """Training rows: embeddings, prior probabilities, soft labels and their weights (0: the
    target was not observed), the time of each row's newest label used, its labels' kinds."""

    embedding: npt.NDArray[np.float32]
    prior: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    weight: npt.NDArray[np.float64]
    label_time: npt.NDArray[np.float64]
    request_ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.request_ids)

    def take(self, rows: npt.NDArray[np.intp]) -> Examples:
        """The selected rows, in the given order."""
        return Examples(
            self.embedding[rows],
            self.prior[rows],
            self.y[rows],
            self.weight[rows],
            self.label_time[rows],
            tuple(self.request_ids[i] for i in rows),
        )


def _pick(
    record: OutcomeRecord, labels: Iterable[LabelRecord], target: TargetSpec
) -> tuple[float, float, float] | None:
    """(value, weight, label time) of the label that decides ``target``, or ``None``."""
    best: tuple[int, float, float, float] | None = None
    for label in labels:
        value: float | None = None
        weight = 1.0
        if target.kind == "sample_success":
            if label.sample_success is not None:
                value = label.sample_success.share
                weight = float(min(label.sample_success.samples, MAX_SAMPLE_WEIGHT))
        elif target.name in label.arm_rewards:
            value = label.arm_rewards[target.name]
        elif label.reward is not None and record.decision.arm == target.name:
            value = label.reward
        if value is None:
            continue
        rank = (_PRIORITY[label.kind], label.unix_time_s)
        if best is None or rank >= (best[0], best[3]):
            best = (rank[0], value, weight, label.unix_time_s)
    return None if best is None else (best[1], best[2], best[3])


def build_examples(items: Iterable[Labelled], spec: HeadSpec, *, embedding_dim: int) -> Examples:
    """The rows of ``items`` that have an embedding, every prior output and a label for at least
    one target."""
    n_targets = len(spec.targets)
    embeddings: list[npt.NDArray[np.float32]] = []
    priors: list[list[float]] = []
    ys: list[list[float]] = []
    weights: list[list[float]] = []
    times: list[float] = []
    ids: list[str] = []
    for item in items:
        record = item.record
        embedding = record.embedding()
        if embedding is None or embedding.shape != (embedding_dim,):
            continue
        if any(t.prior_output not in record.predictions for t in spec.targets):
            continue
        picked = [_pick(record, item.labels, t) for t in spec.targets]
        if all(p is None for p in picked):
            continue
        embeddings.append(embedding)
        priors.append([record.predictions[t.prior_output] for t in spec.targets])
        ys.append([p[0] if p else 0.0 for p in picked])
        weights.append([p[1] if p else 0.0 for p in picked])
        times.append(max(p[2] for p in picked if p))
        ids.append(record.request_id)
    return Examples(
        np.asarray(embeddings, dtype=np.float32).reshape(len(ids), embedding_dim),
        np.asarray(priors, dtype=np.float64).reshape(len(ids), n_targets),
        np.asarray(ys, dtype=np.float64).reshape(len(ids), n_targets),
        np.asarray(weights, dtype=np.float64).reshape(len(ids), n_targets),
        np.asarray(times, dtype=np.float64),
        tuple(ids),
    )
