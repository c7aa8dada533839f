"""Training rows from labelled records: which label decides a target, and off-policy care."""

from __future__ import annotations

import numpy as np

from proxy.learn.store import Labelled
from proxy.learn.targets import best_of_k_spec, build_examples, route_spec
from tests.proxy.learn.builders import DIM, make_label, make_record

SPEC = route_spec("router", cheap_output="p_weak", expensive_output="p_strong")


def _rows(record_arm: str, *labels: object) -> tuple[list[float], list[float]]:
    item = Labelled(make_record("r1", arm=record_arm), tuple(labels), "1")  # type: ignore[arg-type]
    ex = build_examples([item], SPEC, embedding_dim=DIM)
    return ex.y[0].tolist(), ex.weight[0].tolist()


def test_a_reward_alone_informs_only_the_arm_that_answered() -> None:
    assert _rows("expensive", make_label("r1", reward=0.9)) == ([0.0, 0.9], [0.0, 1.0])
    assert _rows("cheap", make_label("r1", reward=0.2)) == ([0.2, 0.0], [1.0, 0.0])


def test_feedback_beats_explored_beats_free_and_the_latest_wins() -> None:
    free = make_label("r1", kind="free", unix_time_s=30, arm_rewards={"cheap": 1.0})
    explored = make_label("r1", kind="explored", unix_time_s=20, arm_rewards={"cheap": 0.0})
    assert _rows("cheap", free, explored)[0][0] == 0.0
    early = make_label("r1", kind="feedback", unix_time_s=5, arm_rewards={"cheap": 0.25})
    late = make_label("r1", kind="feedback", unix_time_s=10, arm_rewards={"cheap": 0.75})
    assert _rows("cheap", late, free, early)[0][0] == 0.75


def test_rows_without_an_embedding_a_prior_or_a_target_are_skipped() -> None:
    no_prior = make_record("a", predictions={"p_strong": 0.5})
    no_embedding = make_record("b").model_copy(update={"embedding_f16": None})
    ok = make_record("c")
    items = [
        Labelled(no_prior, (make_label("a"),), "1"),
        Labelled(no_embedding, (make_label("b"),), "2"),
        Labelled(ok, (make_label("c", sample_success=(3, 4)),), "3"),
        Labelled(ok, (make_label("c"),), "4"),
    ]
    ex = build_examples(items, SPEC, embedding_dim=DIM)
    assert ex.request_ids == ("c",)
    bok = build_examples(items, best_of_k_spec("router", output="p_weak"), embedding_dim=DIM)
    assert bok.request_ids == ("c",)
    assert bok.y[0, 0] == 0.75 and bok.weight[0, 0] == 4.0
    assert np.allclose(np.linalg.norm(bok.embedding[0]), 1.0, atol=1e-3)
