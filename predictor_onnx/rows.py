"""Row-exact encoder and head calls: a prompt's prediction never depends on its batch-mates.

The int8 encoder quantises activations dynamically, with one scale per *tensor*: in a padded
batch every row's scale is set by the largest activation of any row, and the padding width
changes with the batch too. So each prompt runs as its own encoder call at its exact token
length (no padding, no shared scale), and its head call is its own as well. A batch still pays
tokenisation and dispatch once; what it gives up is GEMM width, which on the int8 MiniLM costs
little (measured by ``python -m bench.latency.predictor_speed``: the per-token cost *rises* with a
call's
size on this model). Training, evaluation, the benchmark and serving all embed through
:func:`embed_rows`, so the vectors a head was trained on are the vectors it serves on.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from typing import Any

import numpy as np


def embed_row(session: Any, row: Sequence[int]) -> Any:
    """The embedding ``(dim,)`` of one token-id row, computed alone."""
    ids = np.asarray([row], dtype=np.int64)
    mask = np.ones_like(ids)
    return session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0][0]


def embed_rows(
    session: Any,
    rows: Sequence[Sequence[int]],
    *,
    pool: concurrent.futures.Executor | None = None,
) -> Any:
    """Embeddings ``(len(rows), dim)``, one encoder call per row (concurrently on ``pool``).

    Longest rows are submitted first so that concurrent workers finish together.
    """
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    if pool is not None and len(rows) > 1:
        vectors = list(pool.map(lambda i: embed_row(session, rows[i]), order))
    else:
        vectors = [embed_row(session, rows[i]) for i in order]
    out = np.empty((len(rows), len(vectors[0]) if vectors else 0), dtype=np.float32)
    for i, vector in zip(order, vectors, strict=True):
        out[i] = vector
    return out


def head_rows(session: Any, embedding: Any, features: Any) -> Any:
    """Head probabilities ``(n, arms)``, one head call per row (a GEMM's blocking follows M)."""
    rows = [
        session.run(
            ["probs"], {"embedding": embedding[i : i + 1], "features": features[i : i + 1]}
        )[0][0]
        for i in range(len(embedding))
    ]
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)
