"""Synthetic traffic for the learner tests: prompts in clusters the prior knows nothing of.

Embeddings are unit vectors around ``clusters`` random centres (as real prompt embeddings group by
task). The shipped prior's outputs vary per prompt but ignore the clusters. ``informative``
traffic's outcomes depend on the cluster (the cheap arm fails on some kinds of prompt the prior
rates well); ``noise`` traffic's outcomes are drawn from the prior itself, so the embedding holds
nothing the prior does not already know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from proxy.learn.head import logit, sigmoid
from proxy.learn.records import Entry
from tests.proxy.learn.builders import DIM, make_label, make_record

T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Traffic:
    """Entries to log, and the truth behind them."""

    entries: list[Entry]
    centres: Any
    cheap_shift: Any
    expensive_shift: Any


def traffic(
    n: int,
    *,
    kind: Literal["informative", "noise"],
    seed: int = 0,
    clusters: int = 6,
    start: int = 0,
    policy: str = "router",
    label: Literal["arm_rewards", "sample_success"] = "arm_rewards",
    t0: float = T0,
) -> Traffic:
    """``n`` route requests with one label each (request ids ``q<start>``…)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    shift = np.where(np.arange(clusters) % 2 == 0, 2.5, -2.5)
    exp_shift = np.where(np.arange(clusters) % 3 == 0, -2.0, 1.0)
    data_rng = np.random.default_rng(seed * 1000 + start + 1)
    entries: list[Entry] = []
    for i in range(start, start + n):
        k = int(data_rng.integers(clusters))
        e = centres[k] + data_rng.standard_normal(DIM) * (0.7 / np.sqrt(DIM))
        e /= np.linalg.norm(e)
        p_weak = float(sigmoid(data_rng.normal(0.0, 0.7)))
        p_strong = float(sigmoid(data_rng.normal(1.0, 0.7)))
        if kind == "informative":
            true_cheap = float(sigmoid(logit(p_weak) + shift[k]))
            true_exp = float(sigmoid(logit(p_strong) + exp_shift[k]))
        else:
            true_cheap, true_exp = p_weak, p_strong
        rid = f"q{i}"
        entries.append(
            make_record(
                rid,
                policy=policy,
                unix_time_s=t0 + i,
                embedding=e,
                predictions={"p_weak": p_weak, "p_strong": p_strong, "gain": p_strong - p_weak},
            )
        )
        if label == "arm_rewards":
            rewards = {
                "cheap": float(data_rng.random() < true_cheap),
                "expensive": float(data_rng.random() < true_exp),
            }
            entries.append(make_label(rid, unix_time_s=t0 + i + 0.5, arm_rewards=rewards))
        else:
            samples = 8
            good = int(data_rng.binomial(samples, true_cheap))
            entries.append(
                make_label(
                    rid, kind="free", unix_time_s=t0 + i + 0.5, sample_success=(good, samples)
                )
            )
    return Traffic(entries, centres, shift, exp_shift)
