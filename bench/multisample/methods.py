"""Allocation methods on a multi-sample suite, each as per-prompt expected samples and quality.

Every method is a set of operating points; at each point every prompt has an exact expected
number of samples drawn and an exact expected quality (:mod:`bench.multisample.expected`), so a
method's
curve (mean samples, mean quality) carries no sampling noise and can be bootstrapped over prompts.

- ``uniform``: every prompt gets k samples, the verifier's pick is returned.
- ``adaptive``: the prompt predictor's p̂ sets n per prompt as the online ``best_of_k`` policy
  does (``E[R(n)] = 1 − (1 − p̂)ⁿ``, n maximising E[R(n)] − λ·n, λ swept); also the paper's
  greedy allocation of a fixed total budget (:func:`greedy_equal_budget`).
- ``sequential``: rounds of ``step`` samples until the verifier accepts one (``VerifierStop``),
  up to a cap (swept), using the proxy's own stop-rule functions.
- ``adaptive_sequential``: the first round sized by the prior (``first_round_n``); a prompt whose
  p̂ is below λ (one more sample is worth less than its price, whatever was drawn) stops there,
  others continue as ``sequential`` up to the cap.
- ``oracle``: the split-sample oracle: n per prompt chosen on half of its recorded samples
  (the true curve, up to noise), scored on the other half — the limit of prompt-only prediction.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bench.multisample.expected import VerifierCounts
from proxy.policies.stopping import first_round_n, next_round_n

__all__ = [
    "CAP",
    "MethodPoints",
    "PromptTables",
    "adaptive",
    "adaptive_sequential",
    "first_of",
    "greedy_equal_budget",
    "oracle",
    "oracle_sequential",
    "plan_moments",
    "policy_n",
    "schedule",
    "sequential",
    "uniform",
]

# The most samples any method gives one prompt: half the recorded samples, so the split-sample
# oracle (which scores on the other half) covers the same range as every other method.
CAP = 50
Step = int | Literal["double"]


@dataclass(frozen=True)
class PromptTables:
    """Exact per-prompt tables for n = 0..cap: ``quality[i, n]`` of best-of-n and ``miss[i, n]``,
    the chance that n draws hold no verifier-accepted sample (column 0 of quality is 0)."""

    quality: np.ndarray
    miss: np.ndarray

    @classmethod
    def from_counts(cls, counts: Sequence[VerifierCounts], cap: int = CAP) -> PromptTables:
        """Tables of prompts given their verifier counts: the vectorised form of
        :func:`~bench.multisample.expected.best_of_k_quality`, with
        C(N − a, n)/C(N, n) = Π_{i<n} (N − a − i)/(N − i)."""
        n = np.asarray([c.n for c in counts], float)[:, None]
        acc = np.asarray([c.accepted for c in counts], float)[:, None]
        if np.any(n < cap):
            raise ValueError(f"every prompt needs at least {cap} samples")
        i = np.arange(cap)[None, :]
        ratio = np.clip((n - acc - i) / (n - i), 0.0, 1.0)
        miss = np.hstack([np.ones((len(counts), 1)), np.cumprod(ratio, axis=1)])
        good = np.asarray([c.quality_given(True) for c in counts])[:, None]
        bad = np.asarray([c.quality_given(False) for c in counts])[:, None]
        quality = (1.0 - miss) * good + miss * bad
        quality[:, 0] = 0.0
        return cls(quality, miss)

    @property
    def n_prompts(self) -> int:
        """Number of prompts."""
        return int(self.quality.shape[0])

    @property
    def cap(self) -> int:
        """The largest n tabulated."""
        return int(self.quality.shape[1] - 1)


@dataclass
class MethodPoints:
    """Per-prompt expected samples and quality, ``(n_prompts, n_points)``, and each point's
    parameters."""

    samples: np.ndarray
    quality: np.ndarray
    params: list[dict[str, Any]] = field(default_factory=list)

    def curve(self) -> list[tuple[float, float]]:
        """(mean samples, mean quality) per operating point."""
        return [
            (float(s), float(q))
            for s, q in zip(self.samples.mean(0), self.quality.mean(0), strict=True)
        ]


def uniform(tables: PromptTables, ks: Sequence[int]) -> MethodPoints:
    """Every prompt gets k samples."""
    samples = np.tile(np.asarray(ks, float), (tables.n_prompts, 1))
    return MethodPoints(samples, tables.quality[:, list(ks)], [{"k": k} for k in ks])


def policy_n(p_hat: np.ndarray, lam: float, cap: int) -> np.ndarray:
    """n per prompt as the online ``best_of_k`` policy picks it (``first_round_n``, λ per
    sample, efficiency 1)."""
    return np.asarray([first_round_n(float(p), lam, 1, cap, 1.0) for p in p_hat])


def adaptive(tables: PromptTables, p_hat: np.ndarray, lambdas: Sequence[float]) -> MethodPoints:
    """n per prompt from the predictor as the online policy chooses it, for each λ."""
    rows = np.arange(tables.n_prompts)
    cap = tables.cap
    samples, quality = [], []
    for lam in lambdas:
        n = policy_n(p_hat, lam, cap)
        samples.append(n.astype(float))
        quality.append(tables.quality[rows, n])
    return MethodPoints(
        np.stack(samples, 1), np.stack(quality, 1), [{"lambda": lam} for lam in lambdas]
    )


def greedy_equal_budget(
    tables: PromptTables, p_hat: np.ndarray, mean_samples: int, cap: int = CAP
) -> np.ndarray:
    """The paper's greedy allocation of ``mean_samples · n_prompts`` samples by predicted
    marginal gain (one sample each first); returns n per prompt."""
    p = np.clip(p_hat, 0.0, 1.0)
    n_prompts = len(p)
    extra = mean_samples * n_prompts - n_prompts
    # Predicted gain of the (n+1)-th sample, p(1 − p)^n, is decreasing in n: greedy = top-k.
    gains = [(-(pi * (1 - pi) ** n), i) for i, pi in enumerate(p) for n in range(1, cap)]
    gains.sort()
    n_alloc = np.ones(n_prompts, int)
    for _, i in gains[: max(extra, 0)]:
        n_alloc[i] += 1
    return n_alloc


def schedule(first_n: int, step: Step, cap: int) -> list[int]:
    """Cumulative draw sizes: ``first_n``, then rounds from :func:`next_round_n` up to ``cap``."""
    drawn = [min(first_n, cap)]
    while (more := next_round_n(drawn[-1], step, cap)) > 0:
        drawn.append(drawn[-1] + more)
    return drawn


def _expect(
    tables: PromptTables, rows: np.ndarray, draws: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact expected samples and quality of the prompts ``rows`` under one draw schedule."""
    samples = np.full(len(rows), float(draws[0]))
    for prev, cur in itertools.pairwise(draws):
        samples += (cur - prev) * tables.miss[rows, prev]
    return samples, tables.quality[rows, draws[-1]]


def _grouped(
    tables: PromptTables, plans: Sequence[tuple[int, Step, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Expected samples and quality when prompt i follows plan (first_n, step, cap) ``plans[i]``
    (prompts sharing a plan are computed together)."""
    samples, quality = np.empty(len(plans)), np.empty(len(plans))
    by_plan: dict[tuple[int, Step, int], list[int]] = {}
    for i, plan in enumerate(plans):
        by_plan.setdefault(plan, []).append(i)
    for (first, step, cap), members in by_plan.items():
        rows = np.asarray(members)
        samples[rows], quality[rows] = _expect(tables, rows, schedule(first, step, cap))
    return samples, quality


def plan_moments(
    tables: PromptTables, plans: Sequence[tuple[int, Step, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per prompt, exactly: expected samples, their variance and expected quality when prompt i
    follows the plan (first_n, step, cap) ``plans[i]`` (for the error of a live run)."""
    mean, var, quality = np.empty(len(plans)), np.empty(len(plans)), np.empty(len(plans))
    for i, (first, step, cap) in enumerate(plans):
        draws = np.asarray(schedule(first, step, cap))
        # P(stop after round j) = P(no accept before it) − P(no accept after it); the last
        # round ends the draws whatever it holds.
        reach = np.r_[1.0, tables.miss[i, draws[:-1]]]
        stop = reach - np.r_[reach[1:], 0.0]
        mean[i] = float(stop @ draws)
        var[i] = float(stop @ draws**2) - mean[i] ** 2
        quality[i] = tables.quality[i, draws[-1]]
    return mean, np.maximum(var, 0.0), quality


def first_of(step: Step) -> int:
    """Round one of a plan without a prior: one round of ``step`` (1 for ``double``)."""
    return step if isinstance(step, int) else 1


def sequential(tables: PromptTables, steps: Sequence[Step], caps: Sequence[int]) -> MethodPoints:
    """Draw until the verifier accepts, up to each cap; ``steps[i]`` is prompt i's round size
    (chosen on the training folds of its fold)."""
    columns = [_grouped(tables, [(first_of(s), s, cap) for s in steps]) for cap in caps]
    return MethodPoints(
        np.stack([c[0] for c in columns], 1),
        np.stack([c[1] for c in columns], 1),
        [{"cap": c} for c in caps],
    )


def adaptive_sequential(
    tables: PromptTables,
    p_hat: np.ndarray,
    steps: Sequence[Step],
    lambdas: Sequence[float],
    caps: Sequence[int],
    *,
    prior_first_round: Sequence[bool],
) -> MethodPoints:
    """Verifier stop with a prior-lowered cap, for each (λ, cap): a prompt whose p̂ is below λ
    stops after its first round (under the prior each further sample succeeds with chance p̂
    whatever came before, so drawing on is worth its price λ only when p̂ ≥ λ); the others go on
    in rounds up to the cap. Round one is ``first_round_n`` of the prior where
    ``prior_first_round[i]``, else one round of ``steps[i]`` (chosen on training folds)."""
    points = [(lam, cap) for lam in lambdas for cap in caps]
    columns = []
    for lam, cap in points:
        plans: list[tuple[int, Step, int]] = []
        for p, step, prior in zip(p_hat, steps, prior_first_round, strict=True):
            first = first_round_n(float(p), lam, 1, cap, 1.0) if prior else first_of(step)
            plans.append((first, step, cap if p >= lam else min(first, cap)))
        columns.append(_grouped(tables, plans))
    return MethodPoints(
        np.stack([c[0] for c in columns], 1),
        np.stack([c[1] for c in columns], 1),
        [{"lambda": lam, "cap": c} for lam, c in points],
    )


def _split_counts(
    accepted: np.ndarray, correct: np.ndarray, rng: np.random.Generator
) -> tuple[list[VerifierCounts], list[VerifierCounts]]:
    first, second = [], []
    for acc, cor in zip(accepted, correct, strict=True):
        order = rng.permutation(len(acc))
        half = len(acc) // 2
        a, b = order[:half], order[half : 2 * half]
        first.append(VerifierCounts.from_samples(acc[a], cor[a]))
        second.append(VerifierCounts.from_samples(acc[b], cor[b]))
    return first, second


def oracle(
    accepted: np.ndarray,
    correct: np.ndarray,
    lambdas: Sequence[float],
    *,
    splits: int,
    seed: int,
    cap: int = CAP,
) -> MethodPoints:
    """Split-sample oracle: n_i = argmax_n q̂_A(i, n) − λ·n on half A, scored on half B (and B→A),
    averaged over ``splits`` random halvings."""
    rng = np.random.default_rng(seed)
    n_prompts = len(accepted)
    samples = np.zeros((n_prompts, len(lambdas)))
    quality = np.zeros_like(samples)
    rows = np.arange(n_prompts)
    ns = np.arange(1, cap + 1)
    for _ in range(splits):
        half_a, half_b = _split_counts(accepted, correct, rng)
        tables = (PromptTables.from_counts(half_a, cap), PromptTables.from_counts(half_b, cap))
        for choose, score in ((tables[0], tables[1]), (tables[1], tables[0])):
            for j, lam in enumerate(lambdas):
                # argmax keeps the first (smallest n) of equal values
                n = ns[np.argmax(choose.quality[:, 1:] - lam * ns[None, :], axis=1)]
                samples[:, j] += n
                quality[:, j] += score.quality[rows, n]
    total = 2 * splits
    return MethodPoints(samples / total, quality / total, [{"lambda": lam} for lam in lambdas])


def oracle_sequential(
    accepted: np.ndarray,
    correct: np.ndarray,
    steps: Sequence[Step],
    lambdas: Sequence[float],
    caps: Sequence[int],
    *,
    splits: int,
    seed: int,
    cap: int = CAP,
) -> MethodPoints:
    """``adaptive_sequential`` with a perfect prior: p from half A of each prompt's samples
    (its true success rate, up to noise), scored on half B (and B→A), over random halvings."""
    rng = np.random.default_rng(seed)
    total: MethodPoints | None = None
    for _ in range(splits):
        half_a, half_b = _split_counts(accepted, correct, rng)
        for prior, scored in ((half_a, half_b), (half_b, half_a)):
            p = np.asarray([c.accepted_correct + c.rejected_correct for c in prior]) / (
                np.asarray([c.n for c in prior])
            )
            pts = adaptive_sequential(
                PromptTables.from_counts(scored, cap),
                p,
                steps,
                lambdas,
                caps,
                prior_first_round=[False] * len(p),
            )
            if total is None:
                total = pts
            else:
                total.samples += pts.samples
                total.quality += pts.quality
    assert total is not None
    total.samples /= 2 * splits
    total.quality /= 2 * splits
    return total
