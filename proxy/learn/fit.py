"""The refit itself: a logistic regression on the embedding with the prior's logit as an offset.

For one target with prior logits ``l0``, embeddings ``E``, soft labels ``y`` and weights ``w``::

    z = (1 + a) · l0 + E · v + b
    minimise  Σ w · BCE(y, sigmoid(z))  +  l2 · (‖v‖² + a² + b²)

The penalty pulls every coefficient toward zero *change* (``a = b = 0, v = 0`` is the prior), and
it is a sum, not a mean, over rows: with few labels the penalty dominates and the head stays near
the prior; with many the data speak. ``l2`` is chosen on the newest rows of the training part
(a time split, like the prequential score), from a grid, one value for all of a head's targets
(:func:`choose_shared_l2`). numpy + scipy's L-BFGS, full batch;
callers run it off the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from proxy.learn.head import sigmoid

Array = npt.NDArray[np.float64]
DEFAULT_L2_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
_EPS = 1e-12


@dataclass(frozen=True)
class OffsetFit:
    """Coefficients of one target (zero everywhere: the prior)."""

    weights: Array
    prior_scale: float
    bias: float
    l2: float

    def logit(self, embedding: Array, prior_logit: Array) -> Array:
        """The corrected logits."""
        z = (1.0 + self.prior_scale) * prior_logit + embedding @ self.weights + self.bias
        return np.asarray(z, dtype=np.float64)


def weighted_log_loss(p: Array, y: Array, w: Array) -> float:
    """Mean binary cross-entropy of probabilities ``p`` for soft labels ``y``, weighted by ``w``."""
    q = np.clip(p, 1e-7, 1.0 - 1e-7)
    ce = -(y * np.log(q) + (1.0 - y) * np.log(1.0 - q))
    total = float(w.sum())
    return float((w * ce).sum() / total) if total > 0 else float("nan")


def fit_offset(
    embedding: Array, prior_logit: Array, y: Array, weight: Array, *, l2: float
) -> OffsetFit:
    """Fit one target on the rows with ``weight > 0``."""
    keep = weight > 0
    e = np.asarray(embedding, dtype=np.float64)[keep]
    l0 = np.asarray(prior_logit, dtype=np.float64)[keep]
    t = np.asarray(y, dtype=np.float64)[keep]
    w = np.asarray(weight, dtype=np.float64)[keep]
    d = e.shape[1]
    if not len(t):
        return OffsetFit(np.zeros(d), 0.0, 0.0, l2)

    def loss(theta: Array) -> tuple[float, Array]:
        v, a, b = theta[:d], theta[d], theta[d + 1]
        z = (1.0 + a) * l0 + e @ v + b
        p = sigmoid(z)
        ce = -(t * np.log(p + _EPS) + (1.0 - t) * np.log(1.0 - p + _EPS))
        value = float((w * ce).sum() + l2 * float(theta @ theta))
        g = w * (p - t)
        grad = np.concatenate([e.T @ g, [float(g @ l0)], [float(g.sum())]]) + 2.0 * l2 * theta
        return value, grad

    result = minimize(loss, np.zeros(d + 2), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    theta = np.asarray(result.x, dtype=np.float64)
    return OffsetFit(theta[:d].copy(), float(theta[d]), float(theta[d + 1]), l2)


def choose_l2(
    embedding: Array,
    prior_logit: Array,
    y: Array,
    weight: Array,
    *,
    grid: Sequence[float] = DEFAULT_L2_GRID,
    inner_fraction: float = 0.25,
) -> float:
    """The ``l2`` of ``grid`` with the least log loss on the newest ``inner_fraction`` of the
    observed rows (rows are in time order), fitted on the older ones; ties go to the larger."""
    return choose_shared_l2(
        embedding,
        np.asarray(prior_logit, np.float64)[:, None],
        np.asarray(y, np.float64)[:, None],
        np.asarray(weight, np.float64)[:, None],
        grid=grid,
        inner_fraction=inner_fraction,
    )


def choose_shared_l2(
    embedding: Array,
    prior_logits: Array,
    y: Array,
    weight: Array,
    *,
    grid: Sequence[float] = DEFAULT_L2_GRID,
    inner_fraction: float = 0.25,
) -> float:
    """One ``l2`` for every target of a head (columns of ``prior_logits``, ``y``, ``weight``):
    the least log loss over all observed cells of the newest ``inner_fraction`` of the rows
    that observe any target, each target fitted on the older rows; ties go to the larger.

    One value for all targets, because the policy reads them together: a route's gain is the
    difference of two corrected arms, and two arms regularised apart (one near the prior, one
    moved far) rank prompts by the noise of the choice rather than by either arm. Choosing on
    every target's cells also halves the selection's noise.
    """
    observed = np.flatnonzero((weight > 0).any(axis=1))
    n_inner = int(len(observed) * inner_fraction)
    if n_inner < 10 or len(observed) - n_inner < 10:
        return max(grid)
    split = observed[-n_inner]
    fit_rows = np.arange(len(weight)) < split
    val = ~fit_rows
    best_l2, best_loss = max(grid), np.inf
    for l2 in sorted(grid, reverse=True):
        loss_sum = weight_sum = 0.0
        for j in range(y.shape[1]):
            fit = fit_offset(
                embedding[fit_rows],
                prior_logits[fit_rows, j],
                y[fit_rows, j],
                weight[fit_rows, j],
                l2=l2,
            )
            w = weight[val, j]
            if w.sum() <= 0:
                continue
            p = sigmoid(fit.logit(embedding[val], prior_logits[val, j]))
            loss_sum += weighted_log_loss(p, y[val, j], w) * float(w.sum())
            weight_sum += float(w.sum())
        loss = loss_sum / weight_sum if weight_sum > 0 else np.inf
        if loss < best_loss - 1e-9:
            best_l2, best_loss = l2, loss
    return best_l2
