"""The free labels of sequential best-of-k on a multi-sample suite, and the head fitted on them.

:func:`stream_labels` lives a deployment on some prompts: each runs sequential best-of-k on its
recorded samples (a random draw order, rounds of the round size, the proxy's
:class:`~proxy.policies.stopping.VerifierStop`, up to :data:`STREAM_CAP` samples), and its
outcome record (the shipped prior's ``p_weak`` and the embedding, as the proxy logs them) gets
the free label :func:`proxy.learn.labels.sequential_label` derives from what was drawn.
:func:`fit_like_learner` fits the best-of-k head on them as :class:`proxy.learn.learner.Learner`
does (newest rows held out, one ``l2`` chosen on a time split, the prior as an offset, rounded as
exported) and scores it against the prior with the promotion rule.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.multisample import methods as mm
from bench.multisample.suite import ACCEPT_SCORE
from proxy.learn.fit import choose_shared_l2, fit_offset
from proxy.learn.head import logit, rounded, sigmoid
from proxy.learn.labels import sequential_label
from proxy.learn.learner import LearnerSettings
from proxy.learn.records import (
    DecisionRecord,
    OutcomeRecord,
    SampleOutcome,
    SequentialEvidence,
    pack_embedding,
)
from proxy.learn.score import compare
from proxy.learn.store import Labelled
from proxy.learn.targets import Examples, best_of_k_spec, build_examples
from proxy.policies.stopping import VerifierStop
from recorded_data.multisample import MultiSampleSuite

__all__ = ["PRIOR_OUTPUT", "STREAM_CAP", "fit_like_learner", "shipped_prior", "stream_labels"]

POLICY = "best-of-k"
PRIOR_OUTPUT = "p_weak"
#: The deployment's sample cap while the training folds stream (the suites' headline point).
STREAM_CAP = 8
T0_UNIX_S = 1_750_000_000.0
CACHE_FORMAT = 1


def _cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adaptive-proxy" / "multisample"


def shipped_prior(suite: MultiSampleSuite, *, cache_dir: Path | None = None) -> np.ndarray:
    """The shipped predictor's ``p_weak`` per prompt, as served (cached per predictor hash)."""
    from bench.online.prepare import predictor_fingerprint

    key = hashlib.sha256(
        json.dumps(
            [CACHE_FORMAT, predictor_fingerprint(), [p.prompt_id for p in suite.prompts]],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    path = (cache_dir or _cache_dir()) / f"prior-{suite.spec.name}-{key}.npy"
    if path.is_file():
        return np.asarray(np.load(path), np.float64)
    import asyncio

    from predictor_onnx.runtime import OnnxPredictor

    predictor = OnnxPredictor.load()
    try:
        served = predictor.predict_sync([list(p.messages) for p in suite.prompts])
    finally:
        asyncio.run(predictor.aclose())
    prior = np.asarray([s[PRIOR_OUTPUT] for s in served], np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, prior)
    return prior


def stream_labels(
    accepted: np.ndarray,
    rows: Sequence[int],
    embeddings: np.ndarray,
    prior: np.ndarray,
    step: mm.Step,
    rng: np.random.Generator,
    *,
    cap: int = STREAM_CAP,
) -> tuple[list[Labelled], int]:
    """Sequential best-of-k on ``rows`` in a shuffled order: each prompt's outcome record with
    its free label (only the drawn samples judged); and the samples drawn in all."""
    rule = VerifierStop(ACCEPT_SCORE)
    draws = mm.schedule(mm.first_of(step), step, cap)
    items: list[Labelled] = []
    drawn_total = 0
    for rank, i in enumerate(rng.permutation(np.asarray(rows, int))):
        order = rng.permutation(accepted.shape[1])
        taken, rounds, stopped_by = draws[-1], len(draws), "cap"
        for r, size in enumerate(draws):
            if rule.should_stop([None] * size, [float(accepted[i, j]) for j in order[:size]]):
                taken, rounds, stopped_by = size, r + 1, "verifier"
                break
        drawn_total += taken
        evidence = SequentialEvidence(
            samples=[
                SampleOutcome(
                    index=k,
                    verdict=float(accepted[i, j]),
                    accepted=float(accepted[i, j]) >= ACCEPT_SCORE,
                )
                for k, j in enumerate(order[:taken])
            ],
            rounds=rounds,
            stopped_by=stopped_by,
        )
        now = T0_UNIX_S + rank
        request_id = f"req-{rank}-{int(i)}"
        record = OutcomeRecord(
            request_id=request_id,
            unix_time_s=now,
            policy=POLICY,
            policy_version="bench-free-prior",
            decision=DecisionRecord(arm="sampler", n=taken),
            predictions={PRIOR_OUTPUT: float(prior[i])},
            embedding_f16=pack_embedding(embeddings[i]),
            evidence=evidence,
        )
        label = sequential_label(request_id, evidence, unix_time_s=now + 0.5)
        items.append(Labelled(record, (label,) if label else (), cursor=str(rank)))
    return items, drawn_total


def fit_like_learner(
    items: Sequence[Labelled], settings: LearnerSettings
) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], dict[str, Any]]:
    """The best-of-k head the learner would fit on ``items`` (newest rows held out), as a
    function of (prior p, embeddings); and its prequential verdict against the prior."""
    spec = best_of_k_spec(POLICY, output=PRIOR_OUTPUT)
    examples = build_examples(items, spec, embedding_dim=settings.embedding_dim)
    ordered = examples.take(np.argsort(examples.label_time, kind="stable"))
    n_hold = round(len(ordered) * settings.holdout_fraction)
    train: Examples = ordered.take(np.arange(len(ordered) - n_hold))
    held: Examples = ordered.take(np.arange(len(ordered) - n_hold, len(ordered)))
    if len(train) < settings.min_train or not len(held):
        # The learner fits nothing here: the prior serves.
        reason = f"{len(ordered)} usable rows (min_train {settings.min_train})"
        return (lambda p, emb: np.asarray(p, np.float64)), {
            "train_rows": len(train),
            "holdout_rows": len(held),
            "promoted": False,
            "fitted": False,
            "reason": reason,
        }
    e = train.embedding.astype(np.float64)
    l0 = logit(train.prior)
    l2 = choose_shared_l2(e, l0, train.y, train.weight, grid=settings.l2_grid)
    fit = fit_offset(e, l0[:, 0], train.y[:, 0], train.weight[:, 0], l2=l2)
    weights = np.asarray(rounded(fit.weights))
    scale, bias = rounded([fit.prior_scale])[0], rounded([fit.bias])[0]

    def predict(p: np.ndarray, emb: np.ndarray) -> np.ndarray:
        z = (1.0 + scale) * logit(p) + np.asarray(emb, np.float64) @ weights + bias
        return sigmoid(z)

    candidate = predict(held.prior[:, 0], held.embedding)[:, None]
    comparison = compare(held.prior, candidate, held)
    promoted, why = settings.rule.passes(comparison)
    verdict = {
        "train_rows": len(train),
        "holdout_rows": len(held),
        "l2": l2,
        "fitted": True,
        "promoted": promoted,
        "reason": why,
        "prequential": comparison.to_json(),
    }
    return predict, verdict
