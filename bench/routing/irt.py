"""A one-factor item-response model of the six recorded GSM8K systems.

Each question i has one difficulty factor θ_i ~ N(0, 1); system j answers it correctly with
probability σ(a_j θ_i + b_j) (two-parameter logistic model). Fitted by marginal maximum
likelihood (EM over a Gauss–Hermite-style grid of θ). A question's success probability for system
j is the posterior mean of σ(a_j θ + b_j) given its six recorded outcomes: what a perfect
prompt-only predictor of a one-factor difficulty could know, without the coin-flip of a single
recorded draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["OneFactorIrt", "fit_one_factor_irt"]

_GRID = np.linspace(-6.0, 6.0, 81)
_PRIOR = np.exp(-0.5 * _GRID**2) / np.exp(-0.5 * _GRID**2).sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


@dataclass(frozen=True)
class OneFactorIrt:
    """Fitted item parameters and each question's posterior over the θ grid."""

    discrimination: np.ndarray  # a_j
    intercept: np.ndarray  # b_j
    posterior: np.ndarray  # (n_questions, len(grid))
    log_likelihood: float

    def success_probabilities(self) -> np.ndarray:
        """Posterior-mean success probability ``(n_questions, n_systems)``."""
        item = _sigmoid(np.outer(_GRID, self.discrimination) + self.intercept)  # (grid, systems)
        probs: np.ndarray = self.posterior @ item
        return probs


def _posterior(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    p = np.clip(_sigmoid(np.outer(_GRID, a) + b), 1e-9, 1 - 1e-9)  # (grid, systems)
    log_lik = y @ np.log(p).T + (1 - y) @ np.log(1 - p).T  # (questions, grid)
    log_joint = log_lik + np.log(_PRIOR)
    top = log_joint.max(1, keepdims=True)
    joint = np.exp(log_joint - top)
    total = joint.sum(1, keepdims=True)
    return joint / total, float((np.log(total) + top).sum())


def _m_step(r: np.ndarray, n: np.ndarray, a: float, b: float) -> tuple[float, float]:
    """Newton steps on one item's expected log-likelihood Σ_q r_q log σ + (n_q − r_q) log(1 − σ)."""
    for _ in range(20):
        p = _sigmoid(a * _GRID + b)
        resid = r - n * p
        grad = np.array([np.sum(resid * _GRID), np.sum(resid)])
        w = n * p * (1 - p)
        hess = -np.array(
            [[np.sum(w * _GRID**2), np.sum(w * _GRID)], [np.sum(w * _GRID), np.sum(w)]]
        ) - 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        a, b = a - float(step[0]), b - float(step[1])
        if np.abs(step).max() < 1e-8:
            break
    return a, b


def fit_one_factor_irt(outcomes: np.ndarray, *, iterations: int = 200) -> OneFactorIrt:
    """Fit the model to binary ``outcomes`` ``(n_questions, n_systems)``."""
    y = np.asarray(outcomes, float)
    mean = np.clip(y.mean(0), 0.01, 0.99)
    a, b = np.ones(y.shape[1]), np.log(mean / (1 - mean))
    previous = -np.inf
    for _ in range(iterations):
        post, log_lik = _posterior(y, a, b)
        n_q = post.sum(0)
        for j in range(y.shape[1]):
            a[j], b[j] = _m_step(post.T @ y[:, j], n_q, float(a[j]), float(b[j]))
        if log_lik - previous < 1e-6:
            break
        previous = log_lik
    post, log_lik = _posterior(y, a, b)
    return OneFactorIrt(a.copy(), b.copy(), post, log_lik)
