"""A small synthetic routing suite where the prompt's embedding holds what the prior misses.

Prompts fall in clusters (as real prompt embeddings group by task). The prior's ``p_weak`` /
``p_strong`` vary per prompt but know nothing of the clusters; the recorded outcomes depend on
them: on some clusters the cheap arm does far better than the prior says, on others far worse,
and the expensive arm's edge moves too. A learner that reads the embedding can route better than
the prior; one that does not, cannot.
"""

from __future__ import annotations

import numpy as np

from bench.online.suite import OnlineSuite
from proxy.learn.head import logit, sigmoid

DIM = 16
CHEAP_USD = 0.001
EXPENSIVE_USD = 0.03


def synthetic_suite(
    n: int = 1200, *, seed: int = 0, clusters: int = 6, name: str = "synthetic"
) -> OnlineSuite:
    """``n`` prompts of ``clusters`` kinds, ``DIM``-d embeddings, constant arm costs."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    kind = rng.integers(clusters, size=n)
    embedding = centres[kind] + rng.standard_normal((n, DIM)) * (0.5 / np.sqrt(DIM))
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    p_weak = sigmoid(rng.normal(0.0, 0.7, n))
    p_strong = sigmoid(rng.normal(1.0, 0.7, n))
    cheap_shift = np.where(np.arange(clusters) % 2 == 0, 2.5, -2.5)[kind]
    expensive_shift = np.where(np.arange(clusters) % 3 == 0, -1.5, 1.0)[kind]
    true = np.stack(
        [sigmoid(logit(p_weak) + cheap_shift), sigmoid(logit(p_strong) + expensive_shift)], 1
    )
    reward = (rng.random((n, 2)) < true).astype(np.float64)
    return OnlineSuite(
        name=name,
        prompt_ids=tuple(f"p{i}" for i in range(n)),
        embedding=embedding.astype(np.float32),
        prior=np.stack([p_weak, p_strong], 1),
        reward=reward,
        cost_usd=np.tile([CHEAP_USD, EXPENSIVE_USD], (n, 1)),
        arm_models=("cheap-model", "expensive-model"),
        cv_apgr=0.7,
        provenance={"prior": "synthetic: blind to the clusters"},
    )
