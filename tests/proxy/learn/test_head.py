"""A learned head: zero weights are the prior, derived gains follow, documents are hash-checked."""

from __future__ import annotations

import numpy as np
import pytest

from proxy.learn.head import (
    HeadDocumentError,
    HeadTarget,
    LearnedHead,
    document_sha256,
)

DIM = 4


def _head(weights: tuple[float, ...] = (0.0,) * DIM, bias: float = 0.0) -> LearnedHead:
    return LearnedHead(
        policy="router",
        version="v1",
        embedding_dim=DIM,
        targets=(
            HeadTarget("cheap", "p_weak", weights, 0.0, bias),
            HeadTarget("expensive", "p_strong", (0.0,) * DIM, 0.0, 0.0),
        ),
        derived={"gain": ("p_strong", "p_weak")},
        meta={},
    )


def test_a_zero_head_is_the_prior() -> None:
    prior = {"p_weak": 0.3, "p_strong": 0.8, "gain": 0.5, "p_other": 0.1}
    out = _head().apply(prior, np.ones(DIM) / 2)
    assert out == pytest.approx(prior)


def test_the_head_corrects_its_targets_and_recomputes_the_gain() -> None:
    prior = {"p_weak": 0.5, "p_strong": 0.8, "gain": 0.3}
    out = _head(weights=(2.0, 0.0, 0.0, 0.0)).apply(prior, np.array([1.0, 0.0, 0.0, 0.0]))
    assert out["p_weak"] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert out["p_strong"] == pytest.approx(0.8)
    assert out["gain"] == pytest.approx(0.8 - out["p_weak"])


def test_a_prediction_without_the_prior_output_is_left_alone() -> None:
    assert _head(bias=3.0).apply({"p_strong": 0.4}, np.zeros(DIM)) == {"p_strong": 0.4}


def test_documents_round_trip_and_are_hash_checked() -> None:
    head = _head(weights=(0.25, -1.5, 0.0, 3e-05), bias=0.125)
    document = head.to_document()
    digest = document_sha256(document)
    assert LearnedHead.from_document(document, sha256=digest) == head
    tampered = {**document, "targets": {**document["targets"]}}
    tampered["targets"]["cheap"] = {**document["targets"]["cheap"], "bias": 9.0}
    with pytest.raises(HeadDocumentError, match="sha256"):
        LearnedHead.from_document(tampered, sha256=digest)
    with pytest.raises(HeadDocumentError, match="not a learned head"):
        LearnedHead.from_document({**document, "format": "something-else"})
    short = {**document, "embedding_dim": DIM + 1}
    with pytest.raises(HeadDocumentError, match="embedding_dim"):
        LearnedHead.from_document(short)
