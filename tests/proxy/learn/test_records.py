"""Logged documents: JSON with a schema version, validated targets, compact embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from proxy.learn.records import (
    MAX_ANSWER_CHARS,
    SCHEMA_VERSION,
    LabelRecord,
    SampleOutcome,
    decode_label,
    decode_record,
    encode_entry,
    pack_embedding,
    unpack_embedding,
)
from tests.proxy.learn.builders import make_label, make_record


def test_a_record_round_trips_through_json() -> None:
    record = make_record("r1", key="team-a")
    document = encode_entry(record)
    data = json.loads(document)
    assert data["schema_version"] == SCHEMA_VERSION
    assert "messages" not in data  # never the text unless include_messages
    assert decode_record(document) == record


def test_embeddings_are_float16() -> None:
    vector = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    vector /= np.linalg.norm(vector)
    back = unpack_embedding(pack_embedding(vector))
    assert back.dtype == np.float32 and back.shape == (384,)
    assert float(np.abs(back - vector).max()) < 1e-3


def test_newer_documents_are_skipped_and_unknown_fields_ignored() -> None:
    data = json.loads(encode_entry(make_record("r1")))
    assert decode_record(json.dumps({**data, "new_field": 1})) == make_record("r1").model_copy(
        update={"unix_time_s": data["unix_time_s"]}
    )
    assert decode_record(json.dumps({**data, "schema_version": SCHEMA_VERSION + 1})) is None
    label = json.loads(encode_entry(make_label("r1")))
    assert decode_label(json.dumps({**label, "schema_version": SCHEMA_VERSION + 1})) is None


def test_labels_carry_a_valid_target() -> None:
    with pytest.raises(ValidationError, match="needs arm_rewards"):
        LabelRecord(request_id="r1", unix_time_s=0, kind="feedback", source="x")
    with pytest.raises(ValidationError):
        make_label("r1", reward=1.5)
    with pytest.raises(ValidationError):
        make_label("r1", arm_rewards={"cheap": -0.1})
    with pytest.raises(ValidationError, match="successes exceed samples"):
        make_label("r1", sample_success=(5, 4))


def test_long_answers_are_cut() -> None:
    sample = SampleOutcome(index=0, answer="x" * 10_000)
    assert sample.answer is not None and len(sample.answer) == MAX_ANSWER_CHARS
