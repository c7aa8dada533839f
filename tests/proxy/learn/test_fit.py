"""The offset fit: no data is the prior, little data stays near it, much data moves it."""

from __future__ import annotations

import numpy as np

from proxy.learn.fit import choose_l2, fit_offset
from proxy.learn.head import logit, sigmoid


def _rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, 16))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e, np.full(n, float(logit(0.1)))


def test_no_observed_row_is_the_prior() -> None:
    e, l0 = _rows(20)
    fit = fit_offset(e, l0, np.ones(20), np.zeros(20), l2=1.0)
    assert (fit.prior_scale, fit.bias, float(np.abs(fit.weights).max())) == (0.0, 0.0, 0.0)


def test_little_data_cannot_move_far_from_the_prior() -> None:
    # The prior says 10%; every label says success.
    few_e, few_l0 = _rows(30)
    l2 = choose_l2(few_e, few_l0, np.ones(30), np.ones(30))
    few = fit_offset(few_e, few_l0, np.ones(30), np.ones(30), l2=l2)
    p_few = sigmoid(few.logit(few_e, few_l0))
    assert float(p_few.max()) < 0.2
    many_e, many_l0 = _rows(3000, seed=1)
    l2 = choose_l2(many_e, many_l0, np.ones(3000), np.ones(3000))
    many = fit_offset(many_e, many_l0, np.ones(3000), np.ones(3000), l2=l2)
    assert float(sigmoid(many.logit(many_e, many_l0)).min()) > 0.5
